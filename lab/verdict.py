"""The verdict vocabulary, findings, the headline rule and the statistics of repeats.

Contract. A verdict names what was *observed*. Two verdicts are not findings
about Celery and every renderer draws them apart:
  - `ERROR`: the lab itself failed (a lab bug, a checker that raised);
  - `SETUP_FAILED`: the scenario never ran, because an install, an import
    the environment should have satisfied (a transport's dependency), or
    broker provisioning failed. It is never counted as reproduced or not
    reproduced.
An `Outcome` keeps every `Finding` a judge observed (each with its verdict,
signature, summary and evidence). The headline is picked by one documented
rule, `HEADLINE_ORDER`: a crash (a traceback the worker printed) first, then
loss, duplicate, hang, silent exit, work that never completed, other
deviations from documented behaviour, then timing (stall), then a clear
failure (failed-fast). Comparisons (diff, flips, bisect) use the whole set
(`finding_keys`), never the headline alone. Nothing here knows about
Celery versions. Standard library only.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Iterable


class Verdict(str, enum.Enum):
    PASS = "pass"
    BUG = "bug"
    STALL = "stall"                # completed, but only after a timeout-sized delay (measured)
    INCOMPLETE = "incomplete"      # never completed within the observation window (N s)
    LOST = "lost"                  # never completed, and observed gone: nothing will return it
    DUPLICATE = "duplicate"
    FAILED_FAST = "failed-fast"
    SILENT_EXIT = "silent-exit"
    HANG = "hang"
    NA = "n/a"
    SETUP_FAILED = "setup-failed"  # the scenario never ran (install, import, provisioning)
    ERROR = "error"

    @property
    def is_finding(self) -> bool:
        """True for verdicts that say something about Celery (not n/a, setup-failed, error)."""
        return self not in NOT_RUN

    @property
    def ran(self) -> bool:
        """False when the scenario never produced an observation of Celery."""
        return self not in NOT_RUN

    @classmethod
    def parse(cls, value: str) -> "Verdict":
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(v.value for v in cls)
            raise ValueError(f"unknown verdict {value!r}; allowed: {allowed}") from None


NOT_RUN = frozenset({Verdict.NA, Verdict.SETUP_FAILED, Verdict.ERROR})

# Worst first, by verdict alone: cell colours, "worse/better" in a diff.
SEVERITY = [
    Verdict.ERROR, Verdict.SETUP_FAILED, Verdict.BUG, Verdict.LOST, Verdict.DUPLICATE, Verdict.HANG,
    Verdict.SILENT_EXIT, Verdict.INCOMPLETE, Verdict.STALL, Verdict.FAILED_FAST, Verdict.PASS, Verdict.NA,
]

# The headline rule, by finding class (see Finding.rank): a crash's traceback
# names the root cause, so it heads the symptoms it caused.
HEADLINE_ORDER = ("error", "setup-failed", "crash", "lost", "duplicate", "hang", "silent-exit",
                  "incomplete", "bug", "stall", "failed-fast", "pass", "n/a")

# Every verdict in words: README, legend and summary.md use these.
MEANING = {
    "pass": "behaved as a correct system should",
    "bug": "a failure signature reproduced, or a deviation from documented behaviour (named)",
    "stall": "the work completed, but only after a timeout-sized delay (the delay is measured)",
    "incomplete": "the work never completed within the observation window (N s); "
                  "where it is at the end of the window is observed, any prediction is labelled",
    "lost": "the work never completed and is observed gone: nothing will return it",
    "duplicate": "the same work completed more than once",
    "failed-fast": "a clear, caller-visible failure within a bound",
    "silent-exit": "the worker exited without saying why (exit 0, or nothing at WARNING or above)",
    "hang": "a process did not exit or progress within its bound",
    "n/a": "the scenario does not apply to this cell (the reason is shown)",
    "setup-failed": "the scenario never ran: install, import or broker provisioning failed",
    "error": "the lab itself failed: never a finding about Celery",
}


@dataclass
class Finding:
    """One thing a judge observed: a verdict, a short name, words, evidence.

    `crash` marks a finding read from a traceback the worker printed; it heads
    the outcome (HEADLINE_ORDER). `evidence` holds strings for the cell page.
    """

    verdict: Verdict
    signature: str | None = None
    summary: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    crash: bool = False

    @property
    def rank(self) -> int:
        cls = "crash" if self.crash and self.verdict == Verdict.BUG else self.verdict.value
        return HEADLINE_ORDER.index(cls)

    @property
    def key(self) -> str:
        """'verdict:signature' (or the verdict): what comparisons and k/n are keyed by."""
        return f"{self.verdict.value}:{self.signature}" if self.signature else self.verdict.value

    def to_dict(self) -> dict[str, Any]:
        out = {"verdict": self.verdict.value, "signature": self.signature, "summary": self.summary}
        if self.evidence:
            out["evidence"] = self.evidence
        if self.crash:
            out["crash"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Finding":
        return cls(Verdict.parse(data["verdict"]), data.get("signature"), data.get("summary", ""),
                   dict(data.get("evidence") or {}), bool(data.get("crash")))


def headline(findings: Iterable[Finding]) -> Finding | None:
    """The finding that heads an outcome: lowest HEADLINE_ORDER class, first observed on a tie."""
    ordered = list(findings)
    return min(ordered, key=lambda f: f.rank) if ordered else None


@dataclass
class Outcome:
    """What a scenario concluded for one attempt (or a whole repeated cell).

    `verdict`/`signature`/`summary` are the headline; `findings` is every
    deviation observed (empty for a plain pass, n/a, setup-failed or error).
    An Outcome built with only a headline gets that headline as its one
    finding, so old judges and old records keep working.
    """

    verdict: Verdict
    summary: str = ""
    signature: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    also: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.findings and self.verdict not in NOT_RUN and self.verdict != Verdict.PASS:
            self.findings = [Finding(self.verdict, self.signature, self.summary)]

    @classmethod
    def of(cls, findings: list[Finding], metrics: dict[str, Any] | None = None,
           evidence: dict[str, Any] | None = None, passed: str = "") -> "Outcome":
        """An outcome headed by the HEADLINE_ORDER rule; a pass (summary `passed`) when empty."""
        metrics, evidence = dict(metrics or {}), dict(evidence or {})
        top = headline(findings)
        if top is None:
            return cls(Verdict.PASS, passed, None, metrics, evidence)
        for finding in findings:
            for name, value in finding.evidence.items():
                evidence.setdefault(f"{name}:{finding.signature}" if finding.signature else name, value)
        others = [f for f in findings if f is not top]
        summary = top.summary + "".join(f"; also {f.verdict.value} {f.signature or ''}: {f.summary}"
                                        for f in others[:4])
        return cls(top.verdict, summary[:900], top.signature, metrics, evidence,
                   sorted({f.verdict.value for f in others} - {top.verdict.value}), list(findings))

    def finding_keys(self) -> frozenset[str]:
        """Every finding as 'verdict:signature'; compare these, not only the headline."""
        if self.metrics.get("rates"):  # a repeated cell: every finding any attempt saw
            return frozenset(_rate_key(r) for r in self.metrics["rates"]
                             if isinstance(r, dict) and r.get("verdict", "pass") != "pass")
        return frozenset(f.key for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "summary": self.summary,
            "signature": self.signature,
            "metrics": self.metrics,
            "evidence": self.evidence,
            "also": list(self.also),
            "findings": [f.to_dict() for f in self.findings],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Outcome":
        return cls(
            verdict=Verdict.parse(data["verdict"]),
            summary=data.get("summary", ""),
            signature=data.get("signature"),
            metrics=dict(data.get("metrics") or {}),
            evidence=dict(data.get("evidence") or {}),
            also=list(data.get("also") or []),
            findings=[Finding.from_dict(f) for f in data.get("findings") or []],
        )


def _rate_key(rate: dict[str, Any]) -> str:
    return f"{rate['verdict']}:{rate['signature']}" if rate.get("signature") else rate["verdict"]


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n trials."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be between 0 and n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return (low, high)


def describe_rate(k: int, n: int) -> str:
    """Human words for k of n, honest about small samples."""
    low, high = wilson_interval(k, n)
    if k == 0:
        return f"0/{n} (rate below {high:.1%}, 95% CI)"
    return f"{k}/{n} ({low:.1%}-{high:.1%}, 95% CI)"


def aggregate(attempts: list[Outcome]) -> Outcome:
    """Fold the outcomes of n attempts of one cell into one Outcome.

    k/n is kept per finding ('verdict:signature'), with its Wilson interval,
    in metrics["rates"] (a "pass" row counts the attempts with no finding).
    Attempts that never ran (n/a, setup-failed, error) are not counted in n;
    if none ran, the first such outcome is returned. The headline is the
    HEADLINE_ORDER-first finding any attempt saw, so one reproduction among
    many passes is never hidden; its evidence is that attempt's.
    """
    if not attempts:
        return Outcome(Verdict.ERROR, "no attempt ran")
    ran = [o for o in attempts if o.verdict.ran]
    if not ran:
        return attempts[0]
    if len(attempts) == 1:
        return attempts[0]
    n = len(ran)
    seen: dict[str, dict[str, Any]] = {}
    for index, outcome in enumerate(ran):
        items = outcome.findings or [Finding(Verdict.PASS)]
        for finding in {f.key: f for f in items}.values():
            row = seen.setdefault(finding.key, {"finding": finding, "attempts": []})
            row["attempts"].append(index)
    rates = []
    for key, row in seen.items():
        finding, k = row["finding"], len(row["attempts"])
        low, high = wilson_interval(k, n)
        rates.append({"verdict": finding.verdict.value, "signature": finding.signature, "k": k, "n": n,
                      "low": round(low, 4), "high": round(high, 4),
                      "first_attempt": row["attempts"][0] + 1, "crash": finding.crash,
                      "attempts": [i + 1 for i in row["attempts"]]})
    top = headline(row["finding"] for row in seen.values() if row["finding"].verdict != Verdict.PASS)
    not_run = [o for o in attempts if not o.verdict.ran]
    metrics = {"attempts": n, "rates": rates, "attempt_verdicts": [o.verdict.value for o in attempts]}
    findings = [row["finding"] for row in seen.values() if row["finding"].verdict != Verdict.PASS]
    broken = next((o for o in not_run if o.verdict != Verdict.NA), None)
    if broken is not None:  # a lab error or setup failure in any attempt is never hidden by the others
        index = attempts.index(broken) + 1
        metrics["attempts_not_run"] = len(not_run)
        return Outcome(broken.verdict, f"attempt {index} of {len(attempts)}: {broken.summary}",
                       broken.signature, metrics, broken.evidence,
                       sorted({f.verdict.value for f in findings}), findings)
    if top is None:
        return Outcome(Verdict.PASS, f"pass in {n}/{n} attempts", None, metrics, ran[-1].evidence)
    k = len(seen[top.key]["attempts"])
    first = ran[seen[top.key]["attempts"][0]]
    others = [r for r in rates if _rate_key(r) != top.key and r["verdict"] != "pass"]
    summary = f"{top.signature or top.verdict.value}: {describe_rate(k, n)}" + "".join(
        f"; {r['signature'] or r['verdict']}: {r['k']}/{n}" for r in others[:4])
    return Outcome(
        verdict=top.verdict, summary=summary, signature=top.signature, metrics=metrics,
        evidence=first.evidence,
        also=sorted({r["verdict"] for r in rates} - {top.verdict.value}), findings=findings,
    )


def agree(a: Outcome, b: Outcome) -> bool:
    """Whether two runs of one cell observed the same thing (bench/bench_matrix.py's check).

    In: two Outcomes of the same cell. Out: True or False; never raises on a record this
    lab wrote (a malformed metrics["rates"] row raises KeyError/ValueError).
    - Either did not run (n/a, setup-failed, error) and the other did: False.
    - Neither is repeated: their finding sets and headline verdicts are equal.
    - Otherwise every finding is compared as k/n (a single attempt counts 1/1 per finding,
      or 1/1 "pass" when it found nothing, as `aggregate` keys its pass row): for each key
      either run saw, the two 95% Wilson intervals must overlap. 0/3 and 1/3 of a race are
      the same observation at this n; 0/20 against 18/20 is not."""
    if a.verdict.ran != b.verdict.ran:
        return False
    if not (a.metrics.get("rates") or b.metrics.get("rates")):
        return a.finding_keys() | {a.verdict.value} == b.finding_keys() | {b.verdict.value}

    def rates(o: Outcome) -> tuple[dict[str, tuple[int, int]], int]:
        rows = [r for r in o.metrics.get("rates") or [] if isinstance(r, dict)]
        if not rows:  # one attempt: each finding 1/1, or the pass row
            return {k: (1, 1) for k in (o.finding_keys() or {Verdict.PASS.value})}, 1
        n = max([int(r.get("n", 0)) for r in rows] + [1])
        return {_rate_key(r): (int(r["k"]), int(r["n"])) for r in rows}, n

    (ra, na), (rb, nb) = rates(a), rates(b)
    for key in set(ra) | set(rb):
        low_a, high_a = wilson_interval(*ra.get(key, (0, na)))
        low_b, high_b = wilson_interval(*rb.get(key, (0, nb)))
        if high_a < low_b or high_b < low_a:
            return False
    return True
