"""Markdown files in site/content, rendered once to sanitised HTML and kept until they change."""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from html import unescape
from pathlib import Path
from typing import Any

import frontmatter
import nh3
import yaml
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

logger = logging.getLogger(__name__)

# No h1: the page's only h1 is the article's title (see _fit_headings_below_the_title).
ALLOWED_TAGS = {
    "a", "abbr", "blockquote", "br", "code", "em", "figcaption", "figure", "h2", "h3", "h4",
    "h5", "h6", "hr", "img", "li", "ol", "p", "pre", "strong", "sub", "sup", "table", "tbody",
    "td", "th", "thead", "tr", "ul",
}  # fmt: skip
# A link whose text is its own address; the print stylesheet does not print it twice.
BARE_ADDRESS_CLASS = "bare-address"
ALLOWED_CLASSES = {"a": {BARE_ADDRESS_CLASS}}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "title", "width", "height"},
    "ol": {"start"},
    "td": {"align"},
    "th": {"align", "scope"},
}
ALLOWED_SCHEMES = {"http", "https", "mailto"}

# How often, at most, the folder is looked at for changed files.
CHECK_INTERVAL_SECONDS = 2.0

_markdown = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False})
_markdown.enable("table")


def _fit_headings_below_the_title(state: StateCore) -> None:
    """Move every heading one level down when the body uses "#", so none is a second h1.

    Shifting them all, rather than only the h1s, keeps a "##" under a "#" one level below
    it, as its author meant; "######" stays h6, there being no h7. A body that starts at
    "##", as most do, is left as written.
    """
    headings = [t for t in state.tokens if t.type in ("heading_open", "heading_close")]
    if not any(t.tag == "h1" for t in headings):
        return
    for token in headings:
        token.tag = f"h{min(int(token.tag[1]) + 1, 6)}"


def _mark_bare_addresses(state: StateCore) -> None:
    """Class the links whose text is their own address, like <https://...>."""
    for block in state.tokens:
        children: list[Token] = block.children or []
        for opening, text, closing in zip(children, children[1:], children[2:], strict=False):
            if (opening.type, text.type, closing.type) != ("link_open", "text", "link_close"):
                continue
            if opening.markup == "autolink" or text.content == opening.attrGet("href"):
                opening.attrJoin("class", BARE_ADDRESS_CLASS)


_markdown.core.ruler.push("fit_headings_below_the_title", _fit_headings_below_the_title)
_markdown.core.ruler.push("mark_bare_addresses", _mark_bare_addresses)


_C0_AND_SPACE = "".join(map(chr, range(0x21)))


def _is_remote(address: str) -> bool:
    """An image address that is not on this site: one with a scheme (but data:), or one
    starting with two slashes, which browsers read as another host (a backslash counts)."""
    # As browsers read an address: tabs and line breaks anywhere are dropped, and spaces
    # and control characters at either end, so "/<tab>/host" is "//host".
    address = re.sub(r"[\t\n\r]", "", address).strip(_C0_AND_SPACE).lower()
    scheme = address.split("/", 1)[0]
    if ":" in scheme:
        return not scheme.startswith("data:")
    return bool(re.match(r"[/\\]{2}", address))


def render_markdown(text: str, source: str = "") -> str:
    """Markdown to HTML that keeps only the allow-listed tags, attributes and URL schemes.

    An image from another site loses its address, leaving its description: the page asks
    nothing of any third party (its Content-Security-Policy would block it anyway, and the
    reader would see a broken picture). The operator is told which file to fix.
    """
    remote_images: list[str] = []

    def keep_local_images(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src" and _is_remote(value):
            remote_images.append(value)
            return None
        return value

    html = nh3.clean(
        _markdown.render(text),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes=ALLOWED_CLASSES,
        url_schemes=ALLOWED_SCHEMES,
        link_rel="noopener noreferrer",
        attribute_filter=keep_local_images,
    )
    for address in remote_images:
        logger.warning(
            "content: %s shows an image from another site (%s), which this site does not "
            "load; copy it into site/static and use its path there, like /static/photo.jpg",
            source or "an article", address,
        )  # fmt: skip
    return html


@dataclass(frozen=True)
class Article:
    slug: str
    title: str
    html: str
    description: str = ""
    date: date | None = None
    author: str = ""
    image: str = ""
    # When and where the reported event took place, as written: "3-4 April 2017".
    event: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def short_title(self) -> str:
        """The title as a browser tab or a link preview shows it: without the full stop
        that ends a heading written as a sentence ("...of the Child."), an ellipsis kept."""
        if self.title.endswith(".") and not self.title.endswith(".."):
            return self.title[:-1]
        return self.title


SUMMARY_LENGTH = 160
_FIRST_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def summary(html: str) -> str:
    """A description for an article whose front matter gives none: its first paragraph as
    plain text, cut at a word to about the length search engines and link previews show."""
    match = _FIRST_PARAGRAPH.search(html)
    if match is None:
        return ""
    text = " ".join(unescape(_TAG.sub("", match.group(1))).split())
    if len(text) <= SUMMARY_LENGTH:
        return text
    return text[: SUMMARY_LENGTH - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def image_address(value: str) -> str:
    """The front matter's image as the page names it: another site's address as given, a
    path on this site as given ("/static/hall.jpg"), a bare file name under site/static."""
    value = value.strip()
    if not value or "://" in value or value.startswith("/"):
        return value
    return "/static/" + value


# A slug is one segment of /articles/<slug>: no slash, and not a "." or "..", which a
# browser folds away before it asks.
_ONE_SEGMENT = re.compile(r"(?!\.\.?$)[^/\\]+")


def load_article(path: Path) -> Article:
    # utf-8-sig: a file saved with a byte-order mark (as some Windows editors do) keeps
    # its front matter.
    post = frontmatter.load(str(path), encoding="utf-8-sig")
    meta = dict(post.metadata)
    published = meta.get("date")
    html = render_markdown(post.content, source=path.name)
    slug = str(meta.get("slug") or "").strip() or path.stem
    if not _ONE_SEGMENT.fullmatch(slug):
        logger.error(
            "content: %s has the slug %r, which cannot be one part of a web address (it "
            "has a slash, or is a dot); it is shown at /articles/%s instead.",
            path.name, slug, path.stem,
        )  # fmt: skip
        slug = path.stem
    return Article(
        slug=slug,
        title=str(meta.get("title") or path.stem.replace("-", " ").capitalize()),
        html=html,
        description=str(meta.get("description") or "").strip() or summary(html),
        date=published if isinstance(published, date) else None,
        author=str(meta.get("author") or ""),
        image=image_address(str(meta.get("image") or "")),
        event=str(meta.get("event") or ""),
        meta=meta,
    )


def _by_slug(by_path: dict[Path, Article]) -> dict[str, Article]:
    """Each address to one article. When two files claim a slug (a copy that kept its
    original's `slug:`), the file named after the slug keeps it, else the first by name,
    so a copy never silently takes over a page; the operator is told."""
    owners: dict[str, Path] = {}
    for path in sorted(by_path, key=lambda p: (p.stem != by_path[p].slug, p.name)):
        slug = by_path[path].slug
        if slug in owners:
            logger.error(
                "content: %s has the slug %r, which %s already has; it is not shown. "
                "Give it a slug of its own.",
                path.name, slug, owners[slug].name,
            )  # fmt: skip
            continue
        owners[slug] = path
    return {slug: by_path[path] for slug, path in owners.items()}


class ContentLibrary:
    """The articles in one folder, re-rendered only when a file is added, changed or removed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._stamps: dict[Path, float] = {}
        self._by_path: dict[Path, Article] = {}
        self._by_slug: dict[str, Article] = {}
        self._checked = 0.0
        self.refresh()

    def refresh(self) -> None:
        with self._lock:
            files: dict[Path, float] = {}
            for path in sorted(self.folder.glob("*.md")):
                try:
                    files[path] = path.stat().st_mtime
                except FileNotFoundError:
                    continue  # removed while we looked
            if files == self._stamps:
                return
            by_path: dict[Path, Article] = {}
            for path, mtime in files.items():
                if self._stamps.get(path) == mtime and path in self._by_path:
                    by_path[path] = self._by_path[path]
                    continue
                try:
                    by_path[path] = load_article(path)
                except Exception as error:
                    # One bad file must not take every page down: keep its last good
                    # version, if any, and tell the operator. A mistake in the file is told
                    # by what is wrong and where; anything else with its traceback.
                    if isinstance(error, yaml.YAMLError | UnicodeDecodeError):
                        logger.error(
                            "content: cannot render %s; fix or remove it: %s",
                            path, " ".join(str(error).split()),
                        )  # fmt: skip
                    else:
                        logger.exception("content: cannot render %s; fix or remove it", path)
                    if path in self._by_path:
                        by_path[path] = self._by_path[path]
            self._by_path = by_path
            self._by_slug = _by_slug(by_path)
            self._stamps = files

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked >= CHECK_INTERVAL_SECONDS:
            self._checked = now
            self.refresh()

    def get(self, slug: str) -> Article | None:
        self._maybe_refresh()
        return self._by_slug.get(slug)

    def all(self) -> list[Article]:
        self._maybe_refresh()
        return sorted(self._by_slug.values(), key=lambda a: a.date or date.min, reverse=True)
