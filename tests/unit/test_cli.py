"""The `lab` command: bad input exits 2 naming the file, field and allowed values."""

from __future__ import annotations

from click.testing import CliRunner

from lab.cli import main


def test_validate_reports_field_and_allowed_values(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[matrix]\ncelery = ["5.6.2"]\npools = ["prefrok"]\nscenarios = ["lifecycle-smoke"]\n')
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}: matrix.pools[0]: unknown value 'prefrok'; allowed: eventlet, gevent, prefork" in result.output


def test_plan_prints_cells_and_estimate(tmp_path):
    result = CliRunner().invoke(main, ["plan", "--matrix", "smoke", "--reports", str(tmp_path), "--run-id", "r1"])
    assert result.exit_code == 0, result.output
    assert "matrix smoke: 10 cells over 1 Celery version(s)" in result.output and "estimated" in result.output
    assert (tmp_path / "runs" / "r1" / "plan.json").exists() and (tmp_path / "latest").is_symlink()


def test_plan_rejects_a_version_outside_the_matrix(tmp_path):
    result = CliRunner().invoke(main, ["plan", "--matrix", "smoke", "--reports", str(tmp_path), "--celery", "4.4.7"])
    assert result.exit_code == 2 and "--celery: 4.4.7 not in" in result.output and "allowed: 5.6.2" in result.output


def test_report_on_missing_run_dir_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such run directory" in result.output
