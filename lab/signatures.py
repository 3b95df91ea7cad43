"""Known failure signatures, and naming of unknown ones, over worker logs.

Contract: `classify(log_text)` returns every Match found, known signatures
first, in log order. A traceback that no known signature explains becomes a
new signature keyed by exception type and innermost celery/kombu/billiard
frame ("unknown:AttributeError@asynpool.py:_untrack_child_process") — never
dropped. A signature carries its upstream issue and fixed-in release when
known; the lab never uses `fixed_in` to decide a verdict, only to show it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Signature:
    name: str
    title: str
    pattern: str
    issue_url: str = ""
    fixed_in: str = ""
    severity: str = "bug"
    exc_type: str = ""   # the exception it is; an Unrecoverable error of another type is not folded in


KNOWN = [
    Signature("sentinel-poll-attributeerror",
              "AttributeError: 'ForkProcess' object has no attribute '_sentinel_poll' during shutdown",
              r"AttributeError: 'ForkProcess' object has no attribute '_sentinel_poll'",
              "https://github.com/celery/celery/issues?q=_sentinel_poll", exc_type="AttributeError"),
    Signature("verify-process-alive-assertion",
              "AssertionError in verify_process_alive (fd reuse while children are replaced)",
              r"verify_process_alive[\s\S]{0,400}?AssertionError|assert proc\.outqR_fd in hub\.readers",
              "https://github.com/celery/celery/issues?q=verify_process_alive", exc_type="AssertionError"),
    Signature("timed-out-waiting-for-up",
              "Timed out waiting for UP message from a new pool child",
              r"Timed out waiting for UP message"),
    Signature("shm-read-only",
              "prefork cannot create semaphores: /dev/shm is read-only",
              r"OSError\(30, 'Read-only file system'\)|\[Errno 30\] Read-only file system", exc_type="OSError"),
    Signature("worker-lost-error",
              "WorkerLostError: a pool child exited prematurely",
              r"WorkerLostError\(|billiard\.exceptions\.WorkerLostError", severity="evidence",
              exc_type="WorkerLostError"),
]

UNRECOVERABLE = re.compile(r"Unrecoverable error: (\w+)\(")
TRACEBACK_START = re.compile(r"^Traceback \(most recent call last\):", re.M)
FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Shutdown|Terminate|Lost)\w*)(?::|$)", re.M)
OURS = ("celery/", "kombu/", "billiard/", "amqp/", "vine/")


@dataclass
class Match:
    name: str
    title: str
    excerpt: str
    known: bool
    issue_url: str = ""
    fixed_in: str = ""
    severity: str = "bug"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "excerpt": self.excerpt, "known": self.known,
                "issue_url": self.issue_url, "fixed_in": self.fixed_in, "severity": self.severity}


def _excerpt(text: str, start: int, end: int, context: int = 6) -> str:
    lines_before = text[:start].splitlines()[-context:]
    body = text[start:end]
    after = text[end:].splitlines()[:2]
    return "\n".join(lines_before + [body] + after).strip()


def tracebacks(text: str) -> list[tuple[int, int, str]]:
    """(start, end, block) of each Python traceback in the text."""
    blocks = []
    starts = [m.start() for m in TRACEBACK_START.finditer(text)]
    for index, start in enumerate(starts):
        limit = starts[index + 1] if index + 1 < len(starts) else len(text)
        lines, end = [], start
        for line in text[start:limit].splitlines(keepends=True):
            lines.append(line)
            end += len(line)
            stripped = line.rstrip("\n")
            if lines and len(lines) > 1 and not stripped.startswith((" ", "\t", "Traceback")):
                break
        blocks.append((start, end, "".join(lines)))
    return blocks


def traceback_key(block: str) -> tuple[str, str]:
    """(exception type, innermost celery/kombu/billiard frame) of a traceback."""
    frames = FRAME.findall(block)
    ours = [f for f in frames if any(o in f[0] for o in OURS)] or frames
    frame = ""
    if ours:
        path, _, func = ours[-1]
        frame = f"{path.rsplit('/', 1)[-1]}:{func}"
    last = block.strip().splitlines()[-1] if block.strip() else ""
    exc_type = last.split(":", 1)[0].strip().rsplit(".", 1)[-1] or "Unknown"
    return exc_type, frame


CHAINED = ("During handling of the above exception, another exception occurred:",
           "The above exception was the direct cause of the following exception:")


def context_spans(text: str) -> list[tuple[int, int]]:
    """Tracebacks that are only the context of a later one in the same chain
    ("During handling of the above exception..."): a match there is not the failure."""
    spans, blocks = [], tracebacks(text)
    for (start, end, _), (nxt, _, _) in zip(blocks, blocks[1:]):
        if text[end:nxt].strip() in CHAINED:
            spans.append((start, end))
    return spans


def classify(text: str) -> list[Match]:
    matches: list[Match] = []
    explained: list[tuple[int, int, str]] = []
    contexts = context_spans(text)
    for sig in KNOWN:
        found = next((m for m in re.finditer(sig.pattern, text)
                      if not any(s <= m.start() < e for s, e in contexts)), None)
        if found:
            matches.append(Match(sig.name, sig.title, _excerpt(text, found.start(), found.end()),
                                 True, sig.issue_url, sig.fixed_in, sig.severity))
            explained.append((found.start(), found.end(), sig.exc_type))
    for found in UNRECOVERABLE.finditer(text):
        if any(s - 2000 <= found.start() <= e + 2000 and kind in ("", found.group(1))
               for s, e, kind in explained):
            continue
        after = [b for b in tracebacks(text) if b[0] >= found.start()]
        while len(after) > 1 and text[after[0][1]:after[1][0]].strip() in CHAINED:
            after = after[1:]  # the chain's final exception is the failure
        blocks = after[:1]
        frame = traceback_key(blocks[0][2])[1] if blocks else ""
        name = f"unrecoverable:{found.group(1)}" + (f"@{frame}" if frame else "")
        matches.append(Match(name, f"Unrecoverable error: {found.group(1)}",
                             _excerpt(text, found.start(), blocks[0][1] if blocks else found.end()), False))
        explained.append((found.start(), blocks[0][1] if blocks else found.end(), found.group(1)))
    for start, end, block in tracebacks(text):
        if any(s <= start <= e or start <= s <= end for s, e, _ in explained) or \
                any(s == start for s, _ in contexts):
            continue
        exc_type, frame = traceback_key(block)
        name = f"unknown:{exc_type}" + (f"@{frame}" if frame else "")
        if not any(m.name == name for m in matches):
            matches.append(Match(name, f"{exc_type} traceback", _excerpt(text, start, end, 2), False))
    return matches


def loud_lines(text: str) -> list[str]:
    """Log lines at WARNING or above (Celery's `[date: LEVEL/Process]` format)."""
    return [line for line in text.splitlines()
            if re.search(r"(WARNING|ERROR|CRITICAL)/", line) or line.startswith(("Error", "Traceback"))]
