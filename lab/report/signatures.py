"""Signature metadata for the pages, and safe highlighting of matched text.

Contract: the one registry is `lab.signatures` (titles, upstream issue, fix,
fixed-in release, related signatures); `info(name, extra)` returns its
`describe(name)` merged with per-call `extra` metadata, with every key the
templates read ("title", "issue_url", "fix_url", "fixed_in", "note",
"related", "pattern"). `SIGNATURES` is the registry's named entries, for callers that
list what is known. `highlight()` returns markup that is safe to embed: every
character of the input is escaped and only the `<mark>` wrappers it adds are
raw HTML. Standard library and MarkupSafe (a Jinja2 dependency) only.
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup, escape

from lab import signatures as registry

SIGNATURES: dict[str, dict[str, Any]] = {
    name: registry.describe(name) for name in [s.name for s in registry.KNOWN] + list(registry.BEHAVIOUR)}

UPSTREAM = ("https://github.com/celery/", "https://github.com/redis/", "https://github.com/python/")


def info(name: str | None, extra: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Metadata for a signature (see the module contract); {} for no name."""
    if not name:
        return {}
    merged = dict(registry.describe(name))
    merged.update((extra or {}).get(name, {}))
    for key in ("title", "issue_url", "fix_url", "fixed_in", "pattern", "note"):
        merged[key] = merged.get(key) or ""
    merged["related"] = list(merged.get("related") or ())
    return merged


def _spans(text: str, literals: list[str], pattern: str | None) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for literal in literals:
        if not literal:
            continue
        start = text.find(literal)
        while start >= 0:
            spans.append((start, start + len(literal)))
            start = text.find(literal, start + len(literal))
    if pattern:
        try:
            spans.extend(m.span() for m in re.finditer(pattern, text) if m.end() > m.start())
        except re.error:
            pass
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(text: Any, literals: list[str] | None = None, pattern: str | None = None) -> Markup:
    """Escape `text`, wrapping each matched span in <mark class="sig">."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    out = Markup("")
    position = 0
    for start, end in _spans(text, literals or [], pattern):
        out += escape(text[position:start])
        out += Markup('<mark class="sig">') + escape(text[start:end]) + Markup("</mark>")
        position = end
    return out + escape(text[position:])
