"""Check a built report for dead links and external URLs (used by unit and e2e tests).

`check(out_dir) -> (dead, external)`: every href/src of every .html page under
out_dir, resolved relative to its page; `dead` lists (page, href) whose target
file does not exist (fragments are checked against the target's ids),
`external` lists (page, url) that leave the report other than anchors to an
allowed upstream tracker (`allowed` prefixes). Standard library only.
"""

from __future__ import annotations

import html.parser
from pathlib import Path
from urllib.parse import unquote, urlparse

ALLOWED = ("https://github.com/celery/", "https://github.com/redis/", "https://github.com/python/")


class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if attrs.get(name) is not None:
                self.refs.append((tag, attrs[name]))


def _parse(path: Path) -> _Refs:
    refs = _Refs()
    refs.feed(path.read_text(encoding="utf-8"))
    return refs


def check(out_dir: Path, allowed: tuple[str, ...] = ALLOWED) -> tuple[list, list]:
    dead, external, cache = [], [], {}
    for page in sorted(Path(out_dir).rglob("*.html")):
        for tag, ref in _parse(page).refs:
            url = urlparse(ref)
            if url.scheme in ("http", "https") or ref.startswith("//"):
                if tag != "a" or not ref.startswith(allowed):
                    external.append((str(page), ref))
                continue
            if url.scheme == "data" or ref.startswith("data:"):
                continue
            if url.scheme:
                external.append((str(page), ref))
                continue
            target = (page.parent / unquote(url.path)).resolve() if url.path else page.resolve()
            if not target.is_file():
                dead.append((str(page), ref))
            elif url.fragment and target.suffix == ".html":
                ids = cache.setdefault(target, _parse(target).ids)
                if unquote(url.fragment) not in ids and url.fragment != "main":
                    dead.append((str(page), ref))
    return dead, external
