"""How each verdict looks, in one place, for every page and for summary.md.

Contract: styles are keyed by the verdict *string*, so a verdict this code
does not know (a newer lab.verdict) still renders, with `UNKNOWN_STYLE`.
`VERDICT_ORDER` lists every `lab.verdict.Verdict` member exactly once, in the
order tables, legends and counts use (pass first, lab failures last; members
without a style entry go before them). `style(v)` takes a Verdict or a string.
Colours are the Okabe–Ito colour-blind-safe palette, and every chip also
carries its label as text. Lab failures (`error`, `setup-failed`) are drawn
apart from every finding: hatched, dashed border, never a palette colour.
`severity(v)` ranks verdicts worst first (lab.verdict.SEVERITY; unknown ones
just before pass). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.verdict import SEVERITY, Verdict


@dataclass(frozen=True)
class VerdictStyle:
    css: str          # class name, also used by the filter JS
    label: str        # what a reader sees in a cell and in the legend
    fg: str
    bg: str
    meaning: str      # one line for the legend
    emoji: str = ""   # for summary.md (CI step summaries render markdown)
    lab_failure: bool = False   # drawn hatched: says nothing about Celery


# Okabe & Ito (2008): black, orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple.
STYLES: dict[str, VerdictStyle] = {
    "pass": VerdictStyle("v-pass", "pass", "#000000", "#009E73", "behaved as specified", "🟢"),
    "bug": VerdictStyle("v-bug", "bug", "#000000", "#D55E00", "a known or new defect reproduced", "🔴"),
    "lost": VerdictStyle("v-lost", "lost", "#ffffff", "#000000", "work never completed; a message vanished", "⚫"),
    "incomplete": VerdictStyle("v-incomplete", "incomplete", "#ffffff", "#5f5f5f",
                               "work never completed within the observation window", "◾"),
    "duplicate": VerdictStyle("v-duplicate", "duplicate", "#000000", "#CC79A7", "work ran more than once", "🟣"),
    "hang": VerdictStyle("v-hang", "hang", "#ffffff", "#0072B2", "a process did not exit or progress in its bound", "🔵"),
    "silent-exit": VerdictStyle("v-silent-exit", "silent exit", "#000000", "#E69F00",
                                "the worker exited before ready without saying why", "🟠"),
    "stall": VerdictStyle("v-stall", "stall", "#000000", "#F0E442", "completed, but only after a timeout-sized delay (measured)", "🟡"),
    "failed-fast": VerdictStyle("v-failed-fast", "failed fast", "#000000", "#56B4E9",
                                "refused or failed early with a clear error", "🩵"),
    "n/a": VerdictStyle("v-na", "n/a", "#333333", "#ececec", "combination does not apply (reason shown)", "⚪"),
    "setup-failed": VerdictStyle("v-setup-failed", "setup failed", "#111111", "#ffffff",
                                 "the scenario never ran: install, import or provisioning failed", "⛔", True),
    "error": VerdictStyle("v-error", "lab error", "#111111", "#ffffff",
                          "the lab failed; says nothing about Celery", "⚠️", True),
}
_ORDER = ["pass", "bug", "lost", "duplicate", "hang", "silent-exit", "incomplete", "stall", "failed-fast", "n/a",
          "setup-failed", "error"]

UNKNOWN_STYLE = VerdictStyle("v-unknown", "unknown", "#333333", "#ffffff", "a verdict this lab does not know", "❔")

_members = {v.value: v for v in Verdict}
VERDICT_ORDER: list[Verdict] = [_members[name] for name in _ORDER if name in _members and name not in
                                ("n/a", "setup-failed", "error")]
VERDICT_ORDER += [v for v in Verdict if v.value not in _ORDER]
VERDICT_ORDER += [_members[name] for name in ("n/a", "setup-failed", "error") if name in _members]

VERDICT_STYLE: dict[Verdict, VerdictStyle] = {v: STYLES.get(v.value, UNKNOWN_STYLE) for v in VERDICT_ORDER}


def _value(verdict: Verdict | str) -> str:
    return verdict.value if isinstance(verdict, Verdict) else str(verdict)


def style(verdict: Verdict | str) -> VerdictStyle:
    """The style of a verdict; a name this lab does not know gets UNKNOWN_STYLE, not a crash."""
    return STYLES.get(_value(verdict), UNKNOWN_STYLE)


def is_lab_failure(verdict: Verdict | str) -> bool:
    """True for error and setup-failed: the lab (or the setup) failed, not Celery."""
    return style(verdict).lab_failure


def is_finding(verdict: Verdict | str) -> bool:
    """True for verdicts that say something about Celery (not n/a, not a lab failure)."""
    return _value(verdict) != "n/a" and not is_lab_failure(verdict) and style(verdict) is not UNKNOWN_STYLE


def severity(verdict: Verdict | str) -> int:
    """Rank, worst first (lower is worse); unknown verdicts rank just before pass."""
    names = [v.value for v in SEVERITY]
    value = _value(verdict)
    if value in names:
        return names.index(value)
    return names.index("pass") - 0.5 if "pass" in names else len(names)


def css_rules() -> str:
    """CSS for the verdict classes (inlined into every page)."""
    rules = []
    for s in STYLES.values():
        if s.css == "v-setup-failed":
            rules.append(f".{s.css}{{color:{s.fg};border:2px dotted #111 !important;"
                         "background:repeating-linear-gradient(45deg,#fff 0 5px,#e0e0e0 5px 8px)}")
        elif s.lab_failure:
            rules.append(
                f".{s.css}{{color:{s.fg};border:2px dashed #111 !important;"
                "background:repeating-linear-gradient(135deg,#fff 0 5px,#bdbdbd 5px 8px);"
                "font-style:italic}")
        else:
            rules.append(f".{s.css}{{color:{s.fg};background:{s.bg}}}")
    rules.append(".v-na{border:1px dashed #888 !important}")
    rules.append(".v-unknown{color:#333;background:#fff;border:1px solid #333 !important}")
    return "\n".join(rules)
