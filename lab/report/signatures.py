"""Known failure signatures and how the report highlights them.

Contract: `SIGNATURES` maps a signature name (what a scenario writes to
`outcome.signature`) to optional metadata: "title", "issue_url", "fixed_in",
and "pattern" (a regular expression used to highlight the matched text in
evidence; when absent only literal `evidence["match"]` text is highlighted).
Unknown names are fine: they render with their name only. `highlight()`
returns markup that is safe to embed: every character of the input is escaped
and only the `<mark>` wrappers it adds are raw HTML. Standard library and
MarkupSafe (a Jinja2 dependency) only.
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup, escape

SIGNATURES: dict[str, dict[str, Any]] = {
    "sentinel-poll-attributeerror": {
        "title": "AttributeError from the sentinel poll during worker shutdown",
        "issue_url": "https://github.com/celery/celery/issues",
        "fixed_in": None,
        "pattern": r"AttributeError\b[^\n]*",
    },
}


def info(name: str | None, extra: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Metadata for a signature, merged from SIGNATURES and `extra`."""
    if not name:
        return {}
    merged = dict(SIGNATURES.get(name, {}))
    merged.update((extra or {}).get(name, {}))
    merged.setdefault("title", "")
    merged.setdefault("issue_url", "")
    merged.setdefault("fixed_in", None)
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
