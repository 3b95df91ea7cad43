"""The verdict vocabulary and the statistics of repeated attempts.

Contract: a verdict names what was *observed*. `ERROR` is reserved for the lab
failing (a lab bug, a broker that would not start); it is never a finding about
Celery and every renderer shows it apart from findings. Nothing here knows
about Celery versions. Standard library only.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any


class Verdict(str, enum.Enum):
    PASS = "pass"
    BUG = "bug"
    STALL = "stall"
    LOST = "lost"
    DUPLICATE = "duplicate"
    FAILED_FAST = "failed-fast"
    SILENT_EXIT = "silent-exit"
    HANG = "hang"
    NA = "n/a"
    ERROR = "error"

    @property
    def is_finding(self) -> bool:
        """True for verdicts that say something about Celery (not n/a, error)."""
        return self not in (Verdict.NA, Verdict.ERROR)

    @classmethod
    def parse(cls, value: str) -> "Verdict":
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(v.value for v in cls)
            raise ValueError(f"unknown verdict {value!r}; allowed: {allowed}") from None


# Worst first: used to pick the headline verdict of a repeated cell.
SEVERITY = [
    Verdict.ERROR, Verdict.BUG, Verdict.LOST, Verdict.DUPLICATE, Verdict.HANG,
    Verdict.SILENT_EXIT, Verdict.STALL, Verdict.FAILED_FAST, Verdict.PASS, Verdict.NA,
]


@dataclass
class Outcome:
    """What a scenario concluded for one attempt (or a whole repeated cell)."""

    verdict: Verdict
    summary: str = ""
    signature: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    also: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "summary": self.summary,
            "signature": self.signature,
            "metrics": self.metrics,
            "evidence": self.evidence,
            "also": list(self.also),
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
        )


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
    """Fold the outcomes of n attempts of one cell into one headline Outcome.

    Every distinct (verdict, signature) is counted with its Wilson interval;
    the headline is the most severe verdict seen, so one reproduction among
    many passes is never hidden.
    """
    if not attempts:
        return Outcome(Verdict.ERROR, "no attempt ran")
    if len(attempts) == 1:
        return attempts[0]
    n = len(attempts)
    counts: dict[tuple[str, str | None], list[int]] = {}
    for index, outcome in enumerate(attempts):
        counts.setdefault((outcome.verdict.value, outcome.signature), []).append(index)
    rates = []
    for (verdict, signature), indexes in counts.items():
        low, high = wilson_interval(len(indexes), n)
        rates.append({
            "verdict": verdict, "signature": signature, "k": len(indexes), "n": n,
            "low": round(low, 4), "high": round(high, 4), "first_attempt": indexes[0] + 1,
        })
    worst = min(attempts, key=lambda o: SEVERITY.index(o.verdict))
    k = sum(1 for o in attempts if o.verdict == worst.verdict and o.signature == worst.signature)
    label = worst.signature or worst.verdict.value
    summary = f"{label}: {describe_rate(k, n)}"
    if worst.verdict == Verdict.PASS:
        summary = f"pass in {n}/{n} attempts"
    return Outcome(
        verdict=worst.verdict,
        summary=summary,
        signature=worst.signature,
        metrics={"attempts": n, "rates": rates},
        evidence=worst.evidence,
        also=sorted({o.verdict.value for o in attempts} - {worst.verdict.value}),
    )
