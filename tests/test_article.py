"""The article page: faithful to the original, sanitised, and findable."""

from __future__ import annotations

import html as html_lib
import os
import re
import shutil
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from microsite.config import ROOT
from microsite.content import render_markdown

SEED = Path(__file__).parent / "data" / "osce-article-original.txt"


def visible_text(page: str) -> str:
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", page, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    return " ".join(html_lib.unescape(text).split())


def seed_paragraphs() -> list[str]:
    lines = SEED.read_text(encoding="utf-8").splitlines()
    # Lines holding only a non-breaking space are encoding debris, not paragraphs.
    return [" ".join(line.split()) for line in lines if line.strip(" \u00a0\t")]


def test_every_paragraph_of_the_original_is_on_the_home_page(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    text = visible_text(page.text)
    paragraphs = seed_paragraphs()
    assert len(paragraphs) == 16
    for paragraph in paragraphs:
        # The header's DONATE link is styled upper-case from "Donate".
        if paragraph == "DONATE":
            assert ">Donate</a>" in page.text
            continue
        assert paragraph in text, paragraph


def test_article_structure(client: FlaskClient) -> None:
    html = client.get("/").text
    assert '<h1 id="article-title">OSCE Conference on Trafficking in Children' in html
    assert html.count("<li>") >= 4
    assert "<li>Threats facing children in crisis situations.</li>" in html
    url = "http://en.radiovaticana.va/news/2017/04/03/popes_message_to_osce_human_trafficking_conference/1303043"
    assert f'<a href="{url}" class="bare-address" rel="noopener noreferrer">{url}</a>' in html
    assert "Prepared by Anne Kelleher, RENATE Communications." in html
    assert "Official report on the conference due shortly." in html
    assert "3-4 April 2017" in html
    assert "\u00a0" not in html


def test_header_footer_and_both_forms_beside_the_article(client: FlaskClient) -> None:
    html = client.get("/").text
    assert '<a href="https://www.renate-europe.net/">2022 Assembly</a>' in html
    assert 'class="nav-donate" href="/donate"' in html
    assert "Stop Human Trafficking | Pray for Trafficked Persons" in html
    assert 'action="/pledge"' in html
    assert 'id="donate-heading"' in html


def test_assembly_link_is_configurable(make_app) -> None:
    app = make_app(ASSEMBLY_URL="https://example.org/assembly-2022")
    html = app.test_client().get("/").text
    assert '<a href="https://example.org/assembly-2022">2022 Assembly</a>' in html


def test_the_event_dates_from_front_matter_are_shown_under_the_title(
    make_app, content_dir: Path
) -> None:
    (content_dir / "vigil.md").write_text(
        "---\ntitle: A vigil in Rome\nevent: 8 February 2026, Santa Marta\n---\n\nWe met.\n",
        encoding="utf-8",
    )
    client = make_app(CONTENT_DIR=str(content_dir)).test_client()
    for path, event in (
        ("/", "3-4 April 2017"),
        ("/articles/vigil", "8 February 2026, Santa Marta"),
    ):
        html = client.get(path).text
        header = re.search(r'<header class="article-header">(.*?)</header>', html, re.S).group(1)
        assert re.search(rf'</h1>\s*<p class="article-meta">{event}</p>', header), path


@pytest.mark.parametrize("front", ["title: A note", "title: A note\nevent:\nauthor:"])
def test_without_an_event_the_header_has_no_empty_line(
    make_app, content_dir: Path, front: str
) -> None:
    # Left out, or written with nothing after it: either way, nothing to show.
    (content_dir / "note.md").write_text(f"---\n{front}\n---\n\nHello.\n")
    client = make_app(CONTENT_DIR=str(content_dir)).test_client()
    page = client.get("/articles/note").text
    assert "article-meta" not in page
    assert "None" not in page
    assert 'name="author"' not in page


def test_page_metadata_from_front_matter(client: FlaskClient) -> None:
    html = client.get("/").text
    assert '<html lang="en">' in html
    assert "<title>OSCE Conference on Trafficking in Children and the Best Interests" in html
    assert '<link rel="canonical" href="http://localhost/">' in html
    assert '<meta property="og:title" content="OSCE Conference' in html
    assert '<meta name="description" content="RENATE&#39;s report' in html
    assert '<meta property="og:url" content="http://localhost/">' in html


def test_accessibility_landmarks(client: FlaskClient) -> None:
    html = client.get("/").text
    assert '<a class="skip-link" href="#main">' in html
    assert '<main id="main"' in html
    assert "<header" in html and "<footer" in html and '<nav aria-label="Main">' in html
    for field in ("name", "email", "country", "intention"):
        assert re.search(f'<label[^>]* for="{field}"', html), field


def test_no_request_leaves_the_site(client: FlaskClient) -> None:
    html = client.get("/").text
    loaded = re.findall(r'\ssrc="([^"]+)"', html) + re.findall(
        r'<link rel="(?:stylesheet|icon|preload|manifest)" href="([^"]+)"', html
    )
    assert loaded
    # Everything the page loads comes from this site; only links a person clicks go away.
    assert all(url.startswith("/") and not url.startswith("//") for url in loaded), loaded
    assert "<script" not in html or all(
        s.startswith("/") for s in re.findall(r'<script[^>]*src="([^"]+)"', html)
    )
    assert 'rel="stylesheet" href="/static/site.css"' in html
    assert 'href="/static/print.css" media="print"' in html


def test_print_stylesheet_hides_the_forms() -> None:
    css = (ROOT / "site" / "static" / "print.css").read_text()
    assert ".sidebar" in css.split("display: none")[0]


@pytest.fixture
def content_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "content"
    shutil.copytree(ROOT / "site" / "content", folder)
    return folder


def test_without_a_description_the_first_paragraph_describes_the_page(
    make_app, content_dir: Path
) -> None:
    long = " ".join(["Sisters across Europe prayed together for the children"] * 6)
    (content_dir / "vigil.md").write_text(
        f"---\ntitle: A vigil\n---\n\nWe met *at dawn* & prayed.\n\n{long}\n"
    )
    (content_dir / "long.md").write_text(f"---\ntitle: Long\n---\n\n{long}.\n")
    (content_dir / "empty.md").write_text("---\ntitle: Nothing yet\n---\n")
    client = make_app(CONTENT_DIR=str(content_dir)).test_client()
    vigil = client.get("/articles/vigil").text
    assert '<meta name="description" content="We met at dawn &amp; prayed.">' in vigil
    assert '<meta property="og:description" content="We met at dawn &amp; prayed.">' in vigil
    shown = re.search(
        r'<meta name="description" content="([^"]*)">', client.get("/articles/long").text
    )
    assert shown is not None
    cut = shown.group(1)
    assert cut.endswith("…") and len(cut) <= 160
    assert long.startswith(cut[:-1]) and long[len(cut) - 1] == " "  # cut between words
    assert 'name="description"' not in client.get("/articles/empty").text


@pytest.mark.parametrize(
    ("image", "shown"),
    [
        ("/static/hall.jpg", "http://localhost/static/hall.jpg"),
        ("hall.jpg", "http://localhost/static/hall.jpg"),
        ("https://renate-europe.net/hall.jpg", "https://renate-europe.net/hall.jpg"),
    ],
)
def test_the_link_preview_image_is_found_however_it_is_written(
    make_app, content_dir: Path, image: str, shown: str
) -> None:
    (content_dir / "vigil.md").write_text(f"---\ntitle: A vigil\nimage: {image}\n---\n\nHi.\n")
    page = make_app(CONTENT_DIR=str(content_dir)).test_client().get("/articles/vigil").text
    assert f'<meta property="og:image" content="{shown}">' in page


def test_a_second_markdown_file_becomes_a_page(make_app, content_dir: Path) -> None:
    (content_dir / "prayer-day.md").write_text(
        "---\ntitle: A day of prayer\ndescription: Join us on 8 February.\n---\n\n"
        "We pray on **8 February**.\n",
        encoding="utf-8",
    )
    client = make_app(CONTENT_DIR=str(content_dir)).test_client()
    page = client.get("/articles/prayer-day")
    assert page.status_code == 200
    assert "A day of prayer" in page.text
    assert "We pray on <strong>8 February</strong>." in page.text
    assert '<link rel="canonical" href="http://localhost/articles/prayer-day">' in page.text


def test_a_file_named_with_spaces_has_a_valid_canonical_address(
    make_app, content_dir: Path
) -> None:
    (content_dir / "Day of Prayer.md").write_text("---\ntitle: A day of prayer\n---\n\nHi.\n")
    page = make_app(CONTENT_DIR=str(content_dir)).test_client().get("/articles/Day%20of%20Prayer")
    assert page.status_code == 200
    address = "http://localhost/articles/Day%20of%20Prayer"
    assert f'<link rel="canonical" href="{address}">' in page.text
    assert f'<meta property="og:url" content="{address}">' in page.text


def test_articles_are_rendered_once_not_per_request(
    make_app, content_dir: Path, monkeypatch
) -> None:
    import microsite.content

    rendered: list[str] = []
    real = microsite.content.render_markdown

    def counting(text: str, source: str = "") -> str:
        rendered.append(text)
        return real(text, source)

    monkeypatch.setattr(microsite.content, "render_markdown", counting)
    monkeypatch.setattr(microsite.content, "CHECK_INTERVAL_SECONDS", 0)  # look every time
    client = make_app(CONTENT_DIR=str(content_dir)).test_client()
    at_start = len(rendered)
    assert at_start == len(list(content_dir.glob("*.md")))
    for _ in range(5):
        assert client.get("/").status_code == 200
    assert len(rendered) == at_start
    # A changed file is rendered again, once.
    article = next(content_dir.glob("*.md"))
    article.write_text(article.read_text() + "\nA line added later.\n")
    os.utime(article, (article.stat().st_atime, article.stat().st_mtime + 5))
    for _ in range(3):
        assert "A line added later." in client.get("/").text
    assert len(rendered) == at_start + 1


def test_a_file_added_while_running_appears(make_app, content_dir: Path, monkeypatch) -> None:
    import microsite.content

    monkeypatch.setattr(microsite.content, "CHECK_INTERVAL_SECONDS", 0)
    client = make_app(CONTENT_DIR=str(content_dir)).test_client()
    assert client.get("/articles/late").status_code == 404
    (content_dir / "late.md").write_text("---\ntitle: Late news\n---\n\nHello.\n")
    assert "Late news" in client.get("/articles/late").text


def test_unknown_slug_gets_the_sites_404(client: FlaskClient) -> None:
    page = client.get("/articles/no-such-article")
    assert page.status_code == 404
    assert "We could not find that page" in page.text
    assert "Stop Human Trafficking | Pray for Trafficked Persons" in page.text


@pytest.mark.parametrize(
    ("markdown", "forbidden"),
    [
        ("<script>alert(1)</script>", "<script"),
        ('<a href="javascript:alert(1)">x</a>', 'href="javascript'),
        ('<img src="x.png" onerror="alert(1)">', "onerror"),
        ('<iframe src="https://evil.example"></iframe>', "<iframe"),
        ('<p style="position:fixed">x</p>', "style="),
        ("[x](javascript:alert(1))", 'href="javascript'),
    ],
)
def test_rendering_keeps_only_the_allow_list(markdown: str, forbidden: str) -> None:
    assert forbidden not in render_markdown(markdown)


def test_headings_of_every_level_stay_headings_below_the_title(make_app, content_dir: Path) -> None:
    body = "\n\n".join(f"{'#' * level} Level {level}" for level in range(1, 7))
    (content_dir / "outline.md").write_text(f"---\ntitle: Outline\n---\n\n{body}\n")
    client = make_app(CONTENT_DIR=str(content_dir)).test_client()
    html = client.get("/articles/outline").text
    prose = html.split('<div class="prose">')[1].split("</div>")[0]
    headings = re.findall(r"<h([1-6])>Level (\d)</h\1>", prose)
    # Each keeps its place one level below the one above it; the last has nowhere lower to go.
    assert headings == [("2", "1"), ("3", "2"), ("4", "3"), ("5", "4"), ("6", "5"), ("6", "6")]
    assert re.findall(r"<h1\b[^>]*>", html) == ['<h1 id="article-title">']


def test_a_body_starting_at_level_two_keeps_its_levels() -> None:
    html = render_markdown("## Background\n\n### Numbers\n\n##### A detail")
    assert html.split("\n")[:3] == ["<h2>Background</h2>", "<h3>Numbers</h3>", "<h5>A detail</h5>"]


def test_links_whose_text_is_their_address_are_told_apart_for_print() -> None:
    # The print stylesheet writes each link's address after it, but for these ones.
    html = render_markdown(
        "<https://renate-europe.net/a> [https://renate-europe.net/b](https://renate-europe.net/b)"
        " [RENATE](https://renate-europe.net/c)"
    )
    bare = re.findall(r'<a href="([^"]+)" class="bare-address"', html)
    assert bare == ["https://renate-europe.net/a", "https://renate-europe.net/b"]
    assert '<a href="https://renate-europe.net/c" rel="noopener noreferrer">RENATE</a>' in html


def test_rendering_keeps_ordinary_markup() -> None:
    html = render_markdown("## Heading\n\n*em* and [link](https://renate-europe.net)")
    assert "<h2>Heading</h2>" in html
    assert "<em>em</em>" in html
    assert '<a href="https://renate-europe.net" rel="noopener noreferrer">link</a>' in html


def test_print_stylesheet_hides_the_jump_links_to_the_forms() -> None:
    css = (ROOT / "site" / "static" / "print.css").read_text()
    assert ".jump-links" in css.split("display: none")[0]


def test_a_copy_that_kept_its_slug_never_takes_over_the_page(
    make_app, content_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An editor copies the conference article to start a new one, and keeps its slug:.
    original = content_dir / "osce-conference-trafficking-in-children-2017.md"
    text = original.read_text(encoding="utf-8")
    assert "\nslug: osce-conference-trafficking-in-children-2017\n" in text
    (content_dir / "the-2022-assembly.md").write_text(
        text.replace("title:", "title: DRAFT", 1), encoding="utf-8"
    )
    client = make_app(CONTENT_DIR=str(content_dir)).test_client()
    assert "DRAFT" not in client.get("/").text
    assert "OSCE Conference on Trafficking in Children" in client.get("/").text
    assert "the-2022-assembly.md has the slug 'osce-conference-trafficking-in-children-2017'" in (
        caplog.text
    )


@pytest.mark.parametrize("slug", ["2022/assembly", "..", "a\\\\b"])
def test_a_slug_that_is_not_one_part_of_an_address_falls_back_to_the_file_name(
    make_app, content_dir: Path, caplog: pytest.LogCaptureFixture, slug: str
) -> None:
    # /articles/<slug> takes one part of a path: this page would be at no address at all.
    (content_dir / "assembly.md").write_text(
        f"---\ntitle: The Assembly\nslug: '{slug}'\n---\nWe met in Rome.\n", encoding="utf-8"
    )
    client = make_app(CONTENT_DIR=str(content_dir)).test_client()
    assert "We met in Rome." in client.get("/articles/assembly").text
    assert "assembly.md has the slug" in caplog.text
    assert "it is shown at /articles/assembly instead" in caplog.text


@pytest.mark.parametrize(
    ("title", "shown"),
    [
        ("Trafficking in Children.", "Trafficking in Children"),
        ("Wait for it...", "Wait for it..."),
        ("...and after", "...and after"),
        ("A.N.G.E.L.", "A.N.G.E.L"),
    ],
)
def test_the_tab_title_drops_one_closing_full_stop_only(
    make_app, content_dir: Path, title: str, shown: str
) -> None:
    (content_dir / "note.md").write_text(f"---\ntitle: '{title}'\n---\nText.\n", encoding="utf-8")
    page = make_app(CONTENT_DIR=str(content_dir)).test_client().get("/articles/note").text
    assert f"<title>{shown} \u00b7 " in page
    assert f'<meta property="og:title" content="{shown}">' in page
    assert f">{title}</h1>" in page  # the heading as written


@pytest.mark.parametrize(
    ("written", "told"),
    [
        (b"---\ntitle: [unclosed\n---\n\nText.\n", "line 3, column 1"),
        (b"---\ntitle: caf\xe9\n---\n\nSaved as Latin-1.\n", "can't decode byte 0xe9"),
    ],
    ids=["front matter", "not utf-8"],
)
def test_a_broken_content_file_does_not_take_the_site_down(
    make_app, content_dir: Path, caplog: pytest.LogCaptureFixture, written: bytes, told: str
) -> None:
    (content_dir / "broken.md").write_bytes(written)
    client = make_app(CONTENT_DIR=str(content_dir)).test_client()
    assert client.get("/").status_code == 200
    assert client.get("/articles/broken").status_code == 404
    # One line saying what is wrong and where, for a person editing a file, not a traceback.
    [record] = [r for r in caplog.records if "broken.md" in r.getMessage()]
    assert "fix or remove it: " in record.getMessage() and told in record.getMessage()
    assert record.exc_info is None


def test_a_broken_home_article_still_leaves_the_forms_on_the_home_page(
    make_app, content_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = content_dir / "osce-conference-trafficking-in-children-2017.md"
    home.write_text(home.read_text(encoding="utf-8").replace("title:", "title: [", 1))
    client = make_app(CONTENT_DIR=str(content_dir)).test_client()
    page = client.get("/")
    assert page.status_code == 200
    assert "OSCE" not in page.text
    assert 'class="pledge-form" method="post" action="/pledge"' in page.text
    assert 'id="donate"' in page.text
    assert "the home article 'osce-conference-trafficking-in-children-2017'" in caplog.text
    client.get("/")
    assert caplog.text.count("the home article") == 1  # once, not on every visit


def test_a_file_saved_with_a_byte_order_mark_keeps_its_front_matter(
    make_app, content_dir: Path
) -> None:
    (content_dir / "notepad.md").write_text(
        "\ufeff---\ntitle: Saved in Notepad\nslug: saved-in-notepad\n---\n\nBody text.\n",
        encoding="utf-8",
    )
    page = make_app(CONTENT_DIR=str(content_dir)).test_client().get("/articles/saved-in-notepad")
    assert page.status_code == 200
    assert "<title>Saved in Notepad" in page.text
    assert "title:" not in page.text


@pytest.mark.parametrize(
    "address",
    ["https://upload.example.org/photo.jpg", "//upload.example.org/photo.jpg",
     "HTTP:upload.example.org/photo.jpg"],
)  # fmt: skip
def test_an_image_from_another_site_is_not_loaded_and_the_operator_is_told(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    html = render_markdown(
        f"![Conference photo]({address})\n\n<img src='{address}' alt='Again'>", "photos.md"
    )
    assert "upload.example.org" not in html
    assert 'alt="Conference photo"' in html and 'alt="Again"' in html
    assert "photos.md shows an image from another site" in caplog.text


@pytest.mark.parametrize("hidden", ["/\\", "/&#9;/", "/&#10;/", "&#1; //"])
def test_no_disguise_smuggles_in_another_sites_image(hidden: str) -> None:
    # Browsers read "/\host", and "/<tab>/host", as "//host": another site.
    html = render_markdown(f'<img src="{hidden}upload.example.org/a.jpg" alt="Photo">')
    assert "upload.example.org" not in html


def test_images_of_this_site_are_kept() -> None:
    html = render_markdown("![Logo](/static/logo.png)\n\n![Map](images/map.png)")
    assert 'src="/static/logo.png"' in html
    assert 'src="images/map.png"' in html
