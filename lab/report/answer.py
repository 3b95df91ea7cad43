"""The answer-first view: what happened to the work, per profile × broker (× pool), in words.

Contract (no HTML, no I/O):
- `settings_of(profile)` -> list of (kind, text) a profile applies: ("setting",
  "task_acks_late=True"), ("env", "REMAP_SIGTERM=SIGQUIT"), ("code", ...) for
  application patterns that are not Celery settings, ("lab", ...) for lab
  knobs; names come from lab.catalog.PROFILES, so they are the real ones.
- `words(entry)` -> (text, footnote): what happened to the work in plain
  words ("completed after 14 s", "never completed", "ran twice", "lost"),
  and a caveat or n/a reason ("" if none).
- `scaled(entries)` -> the scaled timings those cells used, each with the
  unscaled default it stands for.
- `answer_versions(report, wanted)` -> the Celery versions the view shows:
  `wanted` when given, else the newest and the production one (the version
  the run covers with the most cells).
- `answer_tables(table, versions)` -> AnswerTable per (version, mode) of a
  scenario with profiles (rows: profiles), per version otherwise (rows: modes); `what_to_use(report, version)` -> rows of the overview's short
  table; `top_findings(report, n)` -> the worst, most frequent findings,
  at most two per scenario.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lab import catalog
from lab.signatures import describe

from lab.report.model import Entry, Report, ScenarioTable, version_key
from lab.report.style import is_finding, is_lab_failure, severity

CODE_ENV = {
    "LAB_APP_MODULES": None,   # how the lab loads the pattern below; not something an application sets
    "LAB_FINALIZE": ("code", "application pattern, not a Celery setting: a worker_shutting_down signal "
                             "handler raises a flag that the running task polls, so it returns partial "
                             "results within the grace period (lab/app/finalize.py)"),
    "LAB_RACE_SIGNALS": ("lab", "signals the lab sends: {value}"),
}

SCALED = {   # metric -> (what it is, the unscaled default it stands for)
    "visibility_timeout_s": ("Redis visibility timeout", "Redis transport default 3600 s (1 h)"),
    "grace_s": ("eviction grace (SIGTERM → SIGKILL)", "terminationGracePeriodSeconds {production_grace_s:.0f} s"),
    "unlock_interval_s": ("chord_unlock poll interval", "Celery default 1 s (not scaled)"),
    # what the record ran with (the reference ran 3 s; lab.catalog.SOFT_SHUTDOWN_S since 2026-12-04)
    "soft_shutdown_timeout_s": ("worker_soft_shutdown_timeout", "{stands_soft:.0f} s of a {production_grace_s:.0f} s "
                                "grace (set per deployment; Celery default 0: off)"),
}
MODE_SCALED = {   # mode -> (what the lab set, what it stands for)
    "slow-start": ("worker_proc_alive_timeout 1 s", "Celery default 4 s"),
}
PROFILE_SCALED = {
    "retry-on-worker-lost": ("default_retry_delay 1 s", "Celery default 180 s"),
}


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def settings_of(profile: str) -> list[tuple[str, str]]:
    """What a profile applies, as (kind, text) pairs (see the module contract)."""
    spec = catalog.PROFILES.get(profile)
    if spec is None:
        return [("lab", f"profile {profile!r} (not in this lab's catalog)")]
    out = [("setting", f"{k}={_fmt(v)}") for k, v in (spec.get("settings") or {}).items()]
    for key, value in (spec.get("env") or {}).items():
        if key in CODE_ENV:
            if CODE_ENV[key]:
                kind, text = CODE_ENV[key]
                out.append((kind, text.format(value=value)))
        else:
            out.append(("env", f"{key}={value}"))
    return out or [("setting", "Celery defaults (nothing set; tasks acknowledged early)")]


def caveat_of(profile: str) -> str:
    """The parenthesised caveat of a profile's catalog description ("" if none)."""
    description = str((catalog.PROFILES.get(profile) or {}).get("description", ""))
    return description[description.index("(") + 1:description.rindex(")")] if "(" in description else ""


def _num(metrics: dict, *names: str) -> float | None:
    for name in names:
        value = metrics.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def words(entry: Entry) -> tuple[str, str]:
    """(what happened to the work, footnote) for one cell."""
    outcome = entry.record.outcome
    m, v = outcome.metrics, outcome.verdict.value
    done = _num(m, "stall_s", "callback_after_sigterm_s", "callback_s", "exit_s")
    window = _num(m, "observed_until_s", "window_s")
    if v == "n/a":
        return "n/a", outcome.summary
    if is_lab_failure(v):
        return "no result (the lab failed here)", outcome.summary
    if v == "pass":
        return (f"completed after {done:.0f} s" if done is not None else "completed as documented"), ""
    if v == "stall":
        if _num(m, "stall_s") is not None:
            return f"completed after {done:.0f} s (waited out a timeout)", outcome.summary
        return (f"not completed within {window:.0f} s" if window else "not completed in the window"), outcome.summary
    if v in ("lost",):
        return "lost: never completed", outcome.summary
    if v == "incomplete":
        return (f"never completed within {window:.0f} s" if window else "never completed"), outcome.summary
    if v == "duplicate":
        return ("error delivered twice" if outcome.signature == "chord-error-twice" else "ran twice"), outcome.summary
    if v == "failed-fast":
        t = _num(m, "chord_error_s")
        return (f"failed after {t:.0f} s, visibly to the caller" if t is not None else "failed visibly"), outcome.summary
    if v == "bug":
        title = describe(outcome.signature).get("title", "") if outcome.signature else ""
        return "bug: " + (outcome.signature or "see cell"), title or outcome.summary
    if v == "hang":
        return "worker hung", outcome.summary
    if v == "silent-exit":
        return "worker exited silently", outcome.summary
    return v, outcome.summary


def scaled(entries: list[Entry]) -> list[tuple[str, str, str]]:
    """(what, the value the lab used, the default it stands for) for the scaled timings of these cells."""
    out: dict[str, tuple[str, str, str]] = {}
    for entry in entries:
        metrics = entry.record.outcome.metrics
        for name, (what, stands) in SCALED.items():
            value = _num(metrics, name)
            if value is not None and name not in out:
                grace = _num(metrics, "production_grace_s") or 60.0
                ratio = grace / (_num(metrics, "grace_s") or grace)  # a value scaled with the grace
                out[name] = (what, f"{value:g} s", stands.format(production_grace_s=grace,
                                                                 stands_soft=value * ratio))
        mode = entry.axis("mode")
        if mode in MODE_SCALED and MODE_SCALED[mode][0] not in out:
            used, stands = MODE_SCALED[mode]
            out[used] = (f"mode {mode}", used, stands)
        profile = entry.axis("profile")
        if profile in PROFILE_SCALED and PROFILE_SCALED[profile][0] not in out:
            used, stands = PROFILE_SCALED[profile]
            out[used] = (f"profile {profile}", used, stands)
    return list(out.values())


def answer_versions(report: Report, wanted: list[str] | None = None) -> list[str]:
    """The versions the answer view shows, newest first (see the module contract)."""
    tested = {e.axis("celery") for e in report.entries}
    if wanted:
        return [v for v in wanted if v in tested]
    if not tested:
        return []
    newest = max(tested, key=version_key)
    counts = Counter(e.axis("celery") for e in report.entries)
    production = max(tested, key=lambda v: (counts[v], version_key(v)))
    return sorted({newest, production}, key=version_key, reverse=True)


def production_version(report: Report) -> str:
    """The Celery version with the most cells in the report (ties: the newer)."""
    counts = Counter(e.axis("celery") for e in report.entries)
    return max(counts, key=lambda v: (counts[v], version_key(v))) if counts else ""


@dataclass
class AnswerCell:
    entry: Entry
    text: str
    note: int = 0   # footnote number, 0 for none


@dataclass
class AnswerTable:
    version: str
    mode: str
    columns: list[tuple[str, str]] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    cells: dict[tuple[str, tuple[str, str]], list[AnswerCell]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    scaled: list[tuple[str, str, str]] = field(default_factory=list)
    row_kind: str = "profile"   # "mode" for scenarios without profiles: one table per version

    def at(self, row: str, column: tuple[str, str]) -> list[AnswerCell]:
        return self.cells.get((row, column), [])


def answer_tables(table: ScenarioTable, versions: list[str]) -> list[AnswerTable]:
    """One AnswerTable per (version, mode) of the scenario that has records."""
    out = []
    pools = list(catalog.POOLS)
    brokers = list(catalog.BROKERS)
    profiles = list(catalog.PROFILES)
    info = catalog.SCENARIOS.get(table.name)
    modes = list(info.modes) if info else []
    by_mode = not (info and info.takes_profiles)
    for version in versions:
        mine = [e for e in table.entries if e.axis("celery") == version]
        groups = [("", mine)] if by_mode else [
            (mode, [e for e in mine if e.axis("mode") == mode])
            for mode in sorted({e.axis("mode") for e in mine}, key=lambda m: modes.index(m) if m in modes else 99)]
        for mode, entries in groups:
            if not entries:
                continue
            at = AnswerTable(version, mode, row_kind="mode" if by_mode else "profile")
            row_of = (lambda e: e.axis("mode")) if by_mode else (lambda e: e.axis("profile"))
            order = modes if by_mode else profiles
            at.columns = sorted({(e.axis("pool"), e.axis("broker")) for e in entries}, key=lambda c: (
                pools.index(c[0]) if c[0] in pools else 99, brokers.index(c[1]) if c[1] in brokers else 99, c))
            at.rows = sorted({row_of(e) for e in entries}, key=lambda p: (order.index(p) if p in order else 99, p))
            for entry in sorted(entries, key=lambda e: e.record.started_at):
                text, note = words(entry)
                number = 0
                if note:
                    if note not in at.notes:
                        at.notes.append(note)
                    number = at.notes.index(note) + 1
                key = (row_of(entry), (entry.axis("pool"), entry.axis("broker")))
                at.cells.setdefault(key, []).append(AnswerCell(entry, text, number))
            at.scaled = scaled(entries)
            out.append(at)
    return out


def what_to_use(report: Report, version: str) -> list[dict[str, Any]]:
    """Per scenario with profiles and broker: which profiles kept the work whole on `version`."""
    rows = []
    for table in report.scenarios:
        info = catalog.SCENARIOS.get(table.name)
        if not info or not info.takes_profiles:
            continue
        mode = info.modes[0]
        entries = [e for e in table.entries if e.axis("celery") == version and e.axis("mode") == mode]
        for broker in sorted({e.axis("broker") for e in entries}, key=lambda b: list(catalog.BROKERS).index(b)
                             if b in catalog.BROKERS else 99):
            cells = [e for e in entries if e.axis("broker") == broker]
            by_profile: dict[str, list[Entry]] = {}
            for e in cells:
                by_profile.setdefault(e.axis("profile"), []).append(e)
            good = [p for p, es in by_profile.items() if all(x.verdict.value == "pass" for x in es)]
            bad = [p for p, es in by_profile.items() if any(is_finding(x.verdict) and x.verdict.value != "pass"
                                                            for x in es)]
            best = min(cells, key=lambda e: (severity(e.verdict) * -1, e.record.duration_s), default=None)
            rows.append({"scenario": table, "mode": mode, "broker": broker, "version": version,
                         "good": [(p, settings_of(p), by_profile[p][0]) for p in good],
                         "bad": [(p, min(by_profile[p], key=lambda e: severity(e.verdict))) for p in bad],
                         "best": best})
    return rows


def top_findings(report: Report, n: int = 10) -> list[dict[str, Any]]:
    """The worst and most frequent (scenario, verdict, signature) groups of non-pass findings."""
    groups: dict[tuple[str, str, str], list[Entry]] = {}
    for entry in report.entries:
        for f in entry.findings:
            if is_finding(f["verdict"]) and f["verdict"] != "pass":
                groups.setdefault((entry.axis("scenario"), f["verdict"], f["signature"] or ""), []).append(entry)
    ranked = sorted(groups.items(), key=lambda kv: (severity(kv[0][1]), -len(kv[1]), kv[0]))
    chosen, per_scenario = [], Counter()
    for key, entries in ranked:   # the worst first, at most two per scenario so every scenario is heard
        if per_scenario[key[0]] < 2:
            chosen.append((key, entries))
            per_scenario[key[0]] += 1
    return [{"scenario": k[0], "verdict": k[1], "signature": k[2], "entries": v,
             "versions": sorted({e.axis("celery") for e in v}, key=version_key),
             "title": describe(k[2]).get("title", "") if k[2] else v[0].record.outcome.summary}
            for k, v in chosen[:n]]
