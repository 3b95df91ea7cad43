"""The ETA scales the wall so far by the planned work left over the planned work done
(lab.progress), so the long cells the runner starts first do not inflate it."""

from __future__ import annotations

import time
from types import SimpleNamespace

from lab.progress import Progress


def _record(cell_id: str):
    return SimpleNamespace(cell_id=cell_id, outcome=SimpleNamespace(verdict=SimpleNamespace(value="pass")))


def test_eta_from_planned_work_not_from_the_long_first_cells(capsys):
    estimates = {"long": 100.0, **{f"short{i}": 5.0 for i in range(20)}}
    progress = Progress(21, [], 1, estimates=estimates)
    progress.started = time.monotonic() - 100.0  # the long cell took 100 s
    progress.update(_record("long"), 100.0)
    eta = progress.eta(20)
    assert 95.0 <= eta <= 105.0  # 100 s planned left at the pace of the first 100 s; the mean would say 2000
    assert "ETA 1m" in capsys.readouterr().out


def test_without_estimates_the_mean_duration_is_used():
    progress = Progress(3, [], 1)
    progress.update(_record("a"), 10.0)
    assert progress.eta(2) == 20.0
