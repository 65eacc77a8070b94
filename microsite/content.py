"""Markdown files in site/content, rendered once to sanitised HTML and kept until they change."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import frontmatter
import nh3
from markdown_it import MarkdownIt

logger = logging.getLogger(__name__)

# Bump when rendering or the allow-list changes, so nothing rendered before is reused.
RENDERER_VERSION = 1

ALLOWED_TAGS = {
    "a", "abbr", "blockquote", "br", "code", "em", "figcaption", "figure", "h2", "h3", "h4",
    "hr", "img", "li", "ol", "p", "pre", "strong", "sub", "sup", "table", "tbody", "td", "th",
    "thead", "tr", "ul",
}  # fmt: skip
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


def render_markdown(text: str) -> str:
    """Markdown to HTML that keeps only the allow-listed tags, attributes and URL schemes."""
    html = _markdown.render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_SCHEMES,
        link_rel="noopener noreferrer",
    )


@dataclass(frozen=True)
class Article:
    slug: str
    title: str
    html: str
    description: str = ""
    date: date | None = None
    author: str = ""
    image: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def load_article(path: Path) -> Article:
    post = frontmatter.load(str(path))
    meta = dict(post.metadata)
    published = meta.get("date")
    return Article(
        slug=str(meta.get("slug") or path.stem),
        title=str(meta.get("title") or path.stem.replace("-", " ").capitalize()),
        html=render_markdown(post.content),
        description=str(meta.get("description", "")),
        date=published if isinstance(published, date) else None,
        author=str(meta.get("author", "")),
        image=str(meta.get("image", "")),
        meta=meta,
    )


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
                except Exception:
                    # One bad file must not take every page down: keep its last good
                    # version, if any, and tell the operator.
                    logger.exception("content: cannot render %s; fix or remove it", path)
                    if path in self._by_path:
                        by_path[path] = self._by_path[path]
            self._by_path = by_path
            self._by_slug = {a.slug: a for a in by_path.values()}
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
