"""Make what the report prints portable: no absolute paths of the machine that ran the cells.

Contract: `portable_command(text)` rewrites every absolute path that lies in
a lab checkout (it contains a `matrices/`, `reports/`, `.nox/`, `lab/`,
`tests/` or `compose/` component) to the same path relative to the
repository root, and any other absolute path under a home or work directory
to `<path>/<basename>`; the result is meant to be run from the root of a lab
checkout. `portable_value(value)` applies it to every string in nested
dicts/lists. `link_if_exists(target, start)` returns a relative href only when
the target file exists (else ""), so no page links a file that was never
written or committed. Standard library only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

MARKERS = ("matrices", "reports", ".nox", "lab", "tests", "compose")
_REPO_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s'\"=:,;()\[\]]+?/)*?(?=(?:%s)/)" % "|".join(re.escape(m) for m in MARKERS))
_OTHER_ABS = re.compile(r"(?<![\w.~-])/(?:home|work|root|Users|srv|opt|tmp|var/tmp)/[^\s'\"=:,;()\[\]]*")


def portable_command(text: Any) -> str:
    """`text` with machine-specific absolute paths made repo-relative (see the module contract)."""
    text = "" if text is None else str(text)
    text = _REPO_PATH.sub("", text)
    return _OTHER_ABS.sub(lambda m: "<path>/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def portable_value(value: Any) -> Any:
    if isinstance(value, str):
        return portable_command(value)
    if isinstance(value, dict):
        return {k: portable_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable_value(v) for v in value]
    return value


def link_if_exists(target: Path, start: Path) -> str:
    """A relative, URL-quoted href from directory `start` to `target`, or "" if target is no file."""
    if not Path(target).is_file():
        return ""
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(start))
    return "/".join(quote(part) for part in Path(rel).parts)
