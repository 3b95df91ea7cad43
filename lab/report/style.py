"""How each verdict looks, in one place, for every page and for summary.md.

Contract: `VERDICT_ORDER` lists every `lab.verdict.Verdict` exactly once in the
order tables, legends and counts use (pass first, lab error last).
`VERDICT_STYLE[v]` gives the CSS class, a short human label and the colours.
`ERROR` is styled apart from every finding: hatched, dashed border, labelled
"lab error", so a lab failure can never be read as a Celery result.
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.verdict import Verdict


@dataclass(frozen=True)
class VerdictStyle:
    css: str          # class name, also used by the filter JS
    label: str        # what a reader sees in a cell and in the legend
    fg: str
    bg: str
    meaning: str      # one line for the legend
    emoji: str = ""   # for summary.md (CI step summaries render markdown)


VERDICT_ORDER = [
    Verdict.PASS, Verdict.BUG, Verdict.LOST, Verdict.DUPLICATE, Verdict.HANG,
    Verdict.SILENT_EXIT, Verdict.INCOMPLETE, Verdict.STALL, Verdict.FAILED_FAST, Verdict.NA,
    Verdict.SETUP_FAILED, Verdict.ERROR,
]

VERDICT_STYLE: dict[Verdict, VerdictStyle] = {
    Verdict.PASS: VerdictStyle("v-pass", "pass", "#14532d", "#c9ecd0",
                               "behaved as specified", "🟢"),
    Verdict.BUG: VerdictStyle("v-bug", "bug", "#ffffff", "#c62828",
                              "a known or new defect reproduced", "🔴"),
    Verdict.LOST: VerdictStyle("v-lost", "lost", "#ffffff", "#7b1fa2",
                               "a task was lost", "🟣"),
    Verdict.DUPLICATE: VerdictStyle("v-duplicate", "duplicate", "#ffffff", "#d84315",
                                    "a task ran more than once", "🟠"),
    Verdict.HANG: VerdictStyle("v-hang", "hang", "#ffffff", "#4e342e",
                               "the worker never finished shutting down", "🟤"),
    Verdict.SILENT_EXIT: VerdictStyle("v-silent-exit", "silent exit", "#ffffff", "#ad1457",
                                      "the worker exited without saying why", "🟥"),
    Verdict.STALL: VerdictStyle("v-stall", "stall", "#3e2a00", "#ffd54f",
                                "completed, but only after a timeout-sized delay (measured)", "🟡"),
    Verdict.INCOMPLETE: VerdictStyle("v-incomplete", "incomplete", "#ffffff", "#6d4c41",
                                     "never completed within the observation window", "⏳"),
    Verdict.FAILED_FAST: VerdictStyle("v-failed-fast", "failed fast", "#ffffff", "#1565c0",
                                      "refused or failed early with a clear error", "🔵"),
    Verdict.NA: VerdictStyle("v-na", "n/a", "#555555", "#ececec",
                             "combination does not apply", "⚪"),
    Verdict.SETUP_FAILED: VerdictStyle("v-setup-failed", "setup failed", "#111111", "#ffffff",
                                       "the scenario never ran (install, import, provisioning)", "🚧"),
    Verdict.ERROR: VerdictStyle("v-error", "lab error", "#111111", "#ffffff",
                                "the lab failed; says nothing about Celery", "⚠️"),
}

assert set(VERDICT_ORDER) == set(Verdict) == set(VERDICT_STYLE)


UNKNOWN_STYLE = VerdictStyle("v-unknown", "unknown", "#333333", "#ffffff", "a verdict this lab does not know")


def style(verdict: Verdict | str) -> VerdictStyle:
    """The style of a verdict; a name this lab does not know gets UNKNOWN_STYLE, not a crash."""
    try:
        return VERDICT_STYLE[Verdict(verdict)]
    except ValueError:
        return UNKNOWN_STYLE


def css_rules() -> str:
    """CSS for the verdict classes (inlined into every page)."""
    rules = []
    for verdict in VERDICT_ORDER:
        s = VERDICT_STYLE[verdict]
        if verdict is Verdict.SETUP_FAILED:
            rules.append(f".{s.css}{{color:{s.fg};border:2px dotted #111 !important;"
                         "background:repeating-linear-gradient(45deg,#fff 0 5px,#e0e0e0 5px 8px)}")
        elif verdict is Verdict.ERROR:
            rules.append(
                f".{s.css}{{color:{s.fg};border:2px dashed #111 !important;"
                "background:repeating-linear-gradient(135deg,#fff 0 5px,#bdbdbd 5px 8px);"
                "font-style:italic}")
        else:
            rules.append(f".{s.css}{{color:{s.fg};background:{s.bg}}}")
    rules.append(".v-unknown{color:#333;background:#fff;border:1px solid #333 !important}")
    return "\n".join(rules)
