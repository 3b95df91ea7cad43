"""reports/latest follows matrix runs only: a triage run dir leaves it where it was."""

from __future__ import annotations

from lab.results import create_run_dir


def test_a_triage_run_leaves_latest_on_the_last_matrix_run(tmp_path):
    create_run_dir(tmp_path, "20261202-000000-aaaaaa")
    triage = create_run_dir(tmp_path, "20261202-000001-bbbbbb", point_latest=False)
    assert triage.is_dir()
    assert (tmp_path / "latest").resolve() == (tmp_path / "runs" / "20261202-000000-aaaaaa").resolve()
