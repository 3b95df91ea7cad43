"""The `lab` command.

Contract: thin click wrappers over the pipeline steps — plan (validate,
expand, estimate, budget, Celery releases; only then the run dir), run-cells
(one Celery version, inside its venv), report (records -> pages), validate,
cleanup (scoped to this reports dir unless --owner/--all; --check kills
nothing). Bad input exits 2 with the file, the field and the allowed values
or bounds; a run whose cells ended in `error` exits 1; an interrupted run
exits 130 after printing the exact resume command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from lab import __version__
from lab.matrix import MatrixError, load_matrix

REPORTS = Path(os.environ.get("LAB_REPORTS_DIR", "reports")).resolve()


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lab")
def main() -> None:
    """Celery lifecycle lab: real workers, real brokers, real signals."""


@main.command()
@click.argument("matrix")
@click.option("--over-budget", is_flag=True, help="Accept an estimate over the matrix's budget_minutes.")
def validate(matrix: str, over_budget: bool) -> None:
    """Check a matrix file (name in matrices/ or a path) and print its cells and estimate."""
    from lab.plan import check_budget, estimate_seconds
    from lab.progress import fmt_duration

    try:
        loaded = load_matrix(matrix)
        cells = loaded.cells()
        estimate = estimate_seconds(cells, loaded.lanes, len(loaded.celery))
        note = check_budget(loaded, estimate, over_budget)
    except MatrixError as exc:
        _fail(str(exc))
    click.echo(f"{loaded.path}: valid, {len(cells)} cell(s), estimated {fmt_duration(estimate)}"
               + (f"; {note}" if note else ""))
    for cell in cells:
        click.echo(f"  {cell.cell_id}")


@main.command()
@click.option("--matrix", "matrix_name", default="default", show_default=True,
              help="Matrix name in matrices/ or a path to a TOML file.")
@click.option("--run-id", default=None, help="Run id (default: timestamp + random suffix).")
@click.option("--reports", type=click.Path(path_type=Path), default=REPORTS, show_default=True)
@click.option("--celery", "only_celery", multiple=True, help="Restrict to these Celery versions.")
@click.option("--over-budget", is_flag=True, help="Plan even when the estimate exceeds budget_minutes.")
@click.option("--shards", type=int, default=None,
              help="Print N balanced shards as a GitHub Actions strategy.matrix (JSON; `estimate_min` is a "
                   "shard's one-lane work in minutes); no run dir.")
@click.option("--shard", "shard_spec", default=None, help="Plan only shard I/N of the matrix, e.g. 2/8.")
@click.option("--output", type=click.Path(path_type=Path), default=None, help="With --shards: write the JSON here.")
def plan(matrix_name: str, run_id: str | None, reports: Path, only_celery: tuple[str, ...],
         over_budget: bool, shards: int | None, shard_spec: str | None, output: Path | None) -> None:
    """Validate and expand a matrix; create the run directory and plan.json.

    Everything that can refuse the run (names, bounds, budget, Celery releases)
    is checked before the run directory exists or reports/latest moves. With
    --shards N, print the balanced split as JSON instead (for a CI fan-out);
    with --shard I/N, plan only that shard (its records merge with the others'
    in `lab report DIR...`; the budget applies to the shard's estimate).
    """
    import json as _json

    from lab.plan import cell_estimate, check_budget, make_plan, write_plan
    from lab.progress import fmt_duration
    from lab.releases import check_releases
    from lab.results import create_run_dir, new_run_id
    from lab.shard import MAX_SHARDS, github_matrix, imbalance, parse_shard

    try:
        matrix = load_matrix(matrix_name)
    except MatrixError as exc:
        _fail(str(exc))
    file_order = list(matrix.celery)
    if only_celery:
        unknown = sorted(set(only_celery) - set(matrix.celery))
        if unknown:
            _fail(f"--celery: {', '.join(unknown)} not in {matrix.path}; allowed: {', '.join(matrix.celery)}")
        matrix.celery = [v for v in matrix.celery if v in only_celery]
    if shards is not None:
        if not 1 <= shards <= MAX_SHARDS:
            _fail(f"--shards {shards}: must be between 1 and {MAX_SHARDS} (a GitHub Actions matrix's job limit)")
        cells = matrix.cells()
        text = _json.dumps(github_matrix(cells, shards, cell_estimate, matrix_name))
        if output:
            output.write_text(text + "\n")
        click.echo(text)
        click.echo(f"{len(cells)} cells in {shards} shard(s); largest/mean estimate "
                   f"{imbalance(cells, shards, cell_estimate)}", err=True)
        return
    try:
        shard = parse_shard(shard_spec) if shard_spec else None
    except ValueError as exc:
        _fail(str(exc))
    run_id = run_id or new_run_id()
    data = make_plan(matrix, run_id, shard)
    try:
        note = check_budget(matrix, data["estimate_s"], over_budget)
        checked = check_releases(matrix.celery, reports / ".cache", matrix.path, file_order=file_order)
    except MatrixError as exc:
        _fail(str(exc))
    run_dir = create_run_dir(reports, run_id)
    write_plan(run_dir, data)
    if shard:
        click.echo(f"shard {shard[0]}/{shard[1]} of plan {data['plan_id']}: {len(data['cells'])} of "
                   f"{data['shard']['cells_total']} cells")
    click.echo(f"matrix {matrix.name}: {len(data['cells'])} cells over {len(data['celery'])} Celery "
               f"version(s) in {len(data['sets'])} dependency set(s), {matrix.lanes} lane(s); "
               f"estimated {fmt_duration(data['estimate_s'])}")
    _note_missing_pythons(data)
    if note:
        click.echo(note)
    click.echo(checked)
    click.echo(f"run dir: {run_dir}")


def _note_missing_pythons(plan_data: dict) -> None:
    """Say up front which Python axis values have no interpreter here (their cells will be n/a)."""
    from lab.interpreters import InterpreterMissing, find_python

    for python in sorted({s["python"] for s in plan_data.get("sets", {}).values()}):
        try:
            find_python(python)
        except InterpreterMissing as exc:
            click.echo(f"note: {exc}; its cells will be n/a")


def _lanes_option(value: str | None) -> int | str | None:
    """--lanes: None, "auto", or a number within lab.matrix.BOUNDS (exit 2 otherwise)."""
    from lab.matrix import BOUNDS
    if value in (None, "auto"):
        return value
    low, high, why = BOUNDS["lanes"]
    if not str(value).isdigit() or not low <= int(value) <= high:
        _fail(f"--lanes {value}: a number in {low}..{high} or `auto` ({why})")
    return int(value)


@main.command("run-cells")
@click.option("--run-dir", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True)
@click.option("--celery", default=None, help="Only cells of this Celery version (the installed one).")
@click.option("--only", multiple=True, help="Only these cell ids.")
@click.option("--lanes", default=None, help="Parallel cells: a number or `auto` (default: the matrix's lanes).")
@click.option("--set", "set_key", default=None, help="Only cells of this dependency set (see plan.json).")
@click.option("--die-with-parent", is_flag=True,
              help="Stop as on SIGTERM when the parent process dies (run-sets, under nox, sets it).")
def run_cells_cmd(run_dir: Path, celery: str | None, only: tuple[str, ...], lanes: str | None,
                  set_key: str | None, die_with_parent: bool) -> None:
    """Run planned cells inside the current (Celery) environment."""
    import signal
    from importlib import metadata

    from lab import lifetime
    from lab.resume import RunnerBusy, resume_command
    from lab.runner import run_cells

    installed = metadata.version("celery")
    if celery and celery != installed:
        _fail(f"--celery {celery} but this environment has celery {installed}")
    if die_with_parent:  # nox killed: stop the cells, keep the records (a nohup'd runner is not tied)
        lifetime.die_with_parent(signal.SIGTERM)
    try:
        run_cells(run_dir, celery or installed, list(only), _lanes_option(lanes), set_key)
    except RunnerBusy as exc:
        _fail(str(exc))
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise
        _fail(f"interrupted; resume with: {resume_command(run_dir)}", 130)


@main.command("run-sets")
@click.option("--run-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="A planned run dir (default: plan --matrix afresh).")
@click.option("--matrix", "matrix_name", default=None, help="Plan this matrix first (name or path).")
@click.option("--set", "set_keys", multiple=True, help="Only these dependency sets (keys in plan.json).")
@click.option("--only", multiple=True, help="Only these cell ids.")
@click.option("--reports", type=click.Path(path_type=Path), default=REPORTS, show_default=True)
@click.option("--die-with-parent", is_flag=True,
              help="Stop as on SIGTERM when the parent process (nox) dies; the noxfile sets it.")
@click.option("--lanes", default=None, help="Parallel cells: a number or `auto` (default: the matrix's lanes).")
def run_sets_cmd(run_dir: Path | None, matrix_name: str | None, set_keys: tuple[str, ...],
                 only: tuple[str, ...], reports: Path, die_with_parent: bool, lanes: str | None) -> None:
    """Build (or reuse) one venv per exact dependency set and run each set's cells in it."""
    import signal

    from lab import lifetime
    from lab.plan import make_plan, write_plan
    from lab.releases import check_releases
    from lab.resume import resume_command
    from lab.results import create_run_dir, new_run_id
    from lab.sets import run_sets

    if die_with_parent:  # nox killed: stop (the running set's cells stop with us, keeping records)
        lifetime.die_with_parent(signal.SIGTERM)
    if run_dir is None:
        try:
            matrix = load_matrix(matrix_name or "default")
            check_releases(matrix.celery, reports / ".cache", matrix.path)  # before the run dir
        except MatrixError as exc:
            _fail(str(exc))
        run_id = new_run_id()
        run_dir = create_run_dir(reports, run_id)
        write_plan(run_dir, make_plan(matrix, run_id))
        click.echo(f"run dir: {run_dir}")
    try:
        lines = run_sets(run_dir, list(set_keys), list(only), lanes=_lanes_option(lanes))
        click.echo(f"{len(lines)} dependency set(s) done in {run_dir}")
    except KeyError as exc:
        _fail(str(exc.args[0]))
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise
        _fail(f"interrupted; resume with: {resume_command(run_dir)}", 130)


@main.command()
@click.argument("run_dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--baseline", default=None,
              help="A run dir to diff against, or `previous` (the newest other run in reports/runs); "
                   "default: reports/reference when present.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output dir (default: the run dir).")
@click.option("--strict", is_flag=True, help="Exit 1 when any finding is not pass (and in junit.xml).")
@click.option("--junit", "junit_mode", type=click.Choice(["plain", "findings", "regressions"]), default="plain",
              show_default=True, help="junit.xml: findings = every non-pass finding is a <failure>; "
                                      "regressions = every cell worse than the baseline is.")
@click.option("--junit-findings", is_flag=True, help="Same as --junit findings.")
@click.option("--fail-on", "fail_on", type=click.Choice(["worse", "changed"]), default=None,
              help="Exit 1 when a verdict is worse than the baseline (or, `changed`, differs at all).")
@click.option("--answer-versions", default=None, help="Comma-separated Celery versions of the answer view "
                                                      "(default: the newest and the production one).")
def report(run_dirs: tuple[Path, ...], baseline: str | None, out: Path | None, strict: bool, junit_mode: str,
           junit_findings: bool, fail_on: str | None, answer_versions: str | None) -> None:
    """Build the HTML report (and results.json, junit.xml, summary.md) from records.

    Exits 1 when any cell ended in `error` (the lab failed); findings about Celery fail it
    only with --strict or --fail-on."""
    from lab.report import SUMMARY_HEADER, build_report, summary_rows
    from lab.report.diff import baseline_info, compare, load_baseline, previous_run
    from lab.results import read_records

    dirs = [Path(d) for d in run_dirs] or [REPORTS / "latest"]
    for path in dirs:
        if not path.exists():
            _fail(f"{path}: no such run directory (run `nox -s matrix` first)")
    reference = REPORTS / "reference"
    base: Path | None
    if baseline == "previous":
        base = previous_run(REPORTS / "runs", [d.resolve() for d in dirs])
        if base is None:
            click.echo("--baseline previous: no other run with records in reports/runs; no diff", err=True)
    elif baseline:
        base = Path(baseline)
        if not base.exists():
            _fail(f"--baseline {baseline}: no such run directory or results file")
    elif (reference / "results.jsonl").exists() and all(d.resolve() != reference.resolve() for d in dirs):
        base = reference  # the diff page compares against the committed reference
    else:
        base = None
    if fail_on and base is None:
        _fail(f"--fail-on {fail_on} needs a baseline (--baseline previous|DIR)")
    out_dir = out or dirs[0].resolve()
    index = build_report([d.resolve() for d in dirs], out_dir, baseline=base, strict=strict,
                         junit="findings" if junit_findings else junit_mode,
                         answer_versions=answer_versions.split(",") if answer_versions else None)
    records = list(read_records(dirs))
    _print_summary([SUMMARY_HEADER, *summary_rows(records)])
    click.echo(f"report: {index}")
    diff = None
    if base is not None:
        before = load_baseline(base)
        run_id, date = baseline_info(base, before)
        diff = compare(records, before, run_id, date)
        click.echo(f"vs baseline {run_id}: {len(diff.worse)} worse, {len(diff.better)} better, "
                   f"{len(diff.added)} new, {len(diff.removed)} gone")
    errors = sum(1 for r in records if r.outcome.verdict.value == "error")
    setup = sum(1 for r in records if r.outcome.verdict.value == "setup-failed")
    findings = sum(1 for r in records if r.outcome.verdict.is_finding and r.outcome.verdict.value != "pass")
    if setup:
        click.echo(f"note: {setup} cell(s) never ran (setup-failed: install, import or provisioning); "
                   "they say nothing about Celery" + ("; --strict fails on them" if strict else ""))
    if fail_on == "worse" and diff.worse:
        _fail((f"{errors} lab error(s) too; " if errors else "") + f"--fail-on worse: {len(diff.worse)} cell(s) "
              f"worse than baseline {diff.baseline}: " + ", ".join(c.cell_id for c in diff.worse[:5]), 1)
    if fail_on == "changed" and not diff.empty:
        _fail(f"--fail-on changed: {len(diff.changed) + len(diff.added) + len(diff.removed)} cell(s) differ "
              f"from baseline {diff.baseline}", 1)
    if errors:
        _fail(f"{errors} cell(s) ended in `error` (the lab failed, not Celery); see the report", 1)
    if strict and (findings or setup):
        _fail(f"--strict: {findings} cell(s) with a finding other than pass, {setup} that never ran", 1)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--only", multiple=True, help="Only these cell ids.")
def rejudge(run_dir: Path, only: tuple[str, ...]) -> None:
    """Judge a run's recorded observations again with the current checkers (no worker runs).

    Rewrites RUN_DIR/results.jsonl; every rejudged record carries environment.rejudged
    (when, lab version, the verdict it had). Run it where the scenarios import (a Celery venv:
    .nox/sets/set-<key>/bin/python -m lab rejudge RUN_DIR), then `lab report RUN_DIR`.
    """
    from lab.rejudge import rejudge as run_rejudge

    try:
        done, changed, kept = run_rejudge(run_dir, list(only), log=click.echo)
    except FileNotFoundError as exc:
        _fail(str(exc))
    click.echo(f"rejudged {done} record(s), {changed} changed; {kept} kept as recorded "
               "(no observations for every attempt, or the checker raised)")


def _print_summary(rows: list) -> None:
    from rich.console import Console
    from rich.table import Table

    if len(rows) < 2:
        click.echo("no records")
        return
    table = Table(title="verdicts per scenario")
    for header in rows[0]:
        table.add_column(str(header))
    for row in rows[1:]:
        table.add_row(*[str(v) for v in row])
    Console(width=120).print(table)


def _triage_options(func):
    for option in reversed([
        click.argument("scenario"),
        click.option("--pool", default="prefork", show_default=True),
        click.option("--broker", default="redis", show_default=True),
        click.option("--backend", default="auto", show_default=True),
        click.option("--profile", default=None, help="Default: the scenario's first profile."),
        click.option("--mode", default=None, help="Default: the scenario's first mode."),
        click.option("-n", "--repeats", default=10, show_default=True, help="Attempts (real worker runs)."),
        click.option("--python", "python", default="default", show_default=True,
                     help="Interpreter major.minor, e.g. 3.9 (found via pyenv, uv or PATH)."),
        click.option("--pin", "pins", multiple=True, metavar="NAME==VER",
                     help="Pin a dependency (repeatable), over the lab's era pins; VER 'unpinned' drops one."),
        click.option("--matrix", "matrix_file", default=None, help="Borrow this matrix's profiles and pins."),
    ]):
        func = option(func)
    return func


def _spec(scenario, celery, pool, broker, backend, profile, mode, repeats, python, pins, matrix_file):
    from lab.deps import parse_pin
    from lab.triage import TriageSpec

    try:
        parsed = dict(parse_pin(p) for p in pins)
    except ValueError as exc:
        _fail(f"--pin: {exc}")
    return TriageSpec(scenario, celery, pool, broker, backend, profile, mode, repeats, python, parsed,
                      matrix_file)


@main.command()
@_triage_options
@click.option("--celery", "celery_version", required=True, help="An exact release, e.g. 5.6.2.")
def triage(scenario, pool, broker, backend, profile, mode, repeats, python, pins, matrix_file,
           celery_version) -> None:
    """Run one scenario cell N times on one dependency set; print k/n per signature."""
    from lab.triage import describe, run_triage

    try:
        spec = _spec(scenario, celery_version, pool, broker, backend, profile, mode, repeats, python, pins,
                     matrix_file)
        record = run_triage(spec, REPORTS)
    except MatrixError as exc:
        _fail(str(exc))
    for line in describe(record):
        click.echo(line)
    from lab.sides import never_ran
    if never_ran(record):
        sys.exit(3)  # the scenario never ran: not a finding either way


@main.command()
@_triage_options
@click.option("--good", required=True, help="A release where the predicate does not hold.")
@click.option("--bad", required=True, help="A release where it holds.")
@click.option("--bad-if", "bad_if", multiple=True, help="Verdict(s) that count as bad (default: any but pass, n/a).")
@click.option("--signature", default=None, help="Only this signature counts as bad.")
@click.option("--versions", default=None, help="Comma-separated releases to search (default: the index's list).")
@click.option("--dependency", default=None, help="Bisect this dependency's releases (kombu, billiard, redis, "
              "amqp, gevent, eventlet, sqlalchemy) with --celery fixed.")
@click.option("--celery", "celery_version", default=None, help="With --dependency: the Celery release to hold.")
def bisect(scenario, pool, broker, backend, profile, mode, repeats, python, pins, matrix_file, good, bad, bad_if,
           signature, versions, dependency, celery_version) -> None:
    """Find the first release (of Celery, or of --dependency) where a failure shows, between --good and --bad.

    A side where the scenario never ran (install/import failure, no worker ever ready) stops the bisect.
    """
    from lab.deps import DEPENDENCIES
    from lab.triage import bisect as run_bisect

    if dependency and dependency not in DEPENDENCIES:
        _fail(f"--dependency: unknown {dependency!r}; allowed: {', '.join(sorted(DEPENDENCIES))}")
    if dependency and not celery_version:
        _fail("--dependency needs --celery VERSION (the Celery release held fixed)")
    verdicts = list(bad_if) or ["bug", "stall", "incomplete", "lost", "duplicate", "hang", "silent-exit",
                                "failed-fast"]
    spec = _spec(scenario, celery_version or bad, pool, broker, backend, profile, mode, repeats, python, pins,
                 matrix_file)
    try:
        result = run_bisect(spec, good, bad, verdicts, signature, REPORTS,
                            versions.split(",") if versions else None, log=click.echo, dependency=dependency)
    except MatrixError as exc:
        _fail(str(exc))
    if result.get("never_ran"):
        click.echo(result["note"])
        sys.exit(3)
    click.echo(f"first bad: {result['first_bad']}; last good: {result['last_good']} ({result['note']})")


@main.command()
@click.option("--owner", default=None, help="Only processes of this owner token (nested tokens included).")
@click.option("--all", "everything", is_flag=True,
              help="Every lab process on the machine (other checkouts' runs and tests too).")
@click.option("--reports", type=click.Path(path_type=Path), default=REPORTS, show_default=True,
              help="The reports dir whose runs are in scope (default scope).")
@click.option("--check", is_flag=True, help="List what is left and exit 1 if anything is; kill nothing.")
def cleanup(owner: str | None, everything: bool, reports: Path, check: bool) -> None:
    """Stop lab processes and remove lab temp dirs whose owner died.

    Default: processes whose LAB_SCOPE is this reports dir (its runs, and this
    checkout's tests), and temp dirs of that scope whose owner is gone.
    --owner TOKEN: processes of that token. --all: every process carrying
    LAB_OWNER and every ownerless lab temp dir on the machine. --check: the
    same selection, listed only; exit 1 if anything is left.
    """
    from lab.reaper import (find_all_owned, find_in_scope, find_owned, kill_tree,
                            remove_stale_temp_dirs, stale_temp_dirs)

    if owner and everything:
        _fail("--owner and --all exclude each other")
    scope = None if (everything or owner) else str(Path(reports).resolve())
    found = find_owned(owner) if owner else (find_all_owned() if everything else find_in_scope(scope))
    dirs = stale_temp_dirs(scope=scope, token=owner)
    verb = "left running" if check else "stopping"
    for proc in found:
        try:
            click.echo(f"{verb}: pid {proc.pid} {' '.join(proc.cmdline()[:6])}")
        except Exception:
            click.echo(f"{verb}: pid {proc.pid}")
    for path in dirs:
        click.echo(f"{'left behind' if check else 'removing'}: {path}")
    where = f"owner {owner}" if owner else ("the machine" if everything else f"scope {scope}")
    if check:
        if found or dirs:
            _fail(f"{len(found)} lab process(es) and {len(dirs)} temp dir(s) left in {where} "
                  "(nothing was killed)", 1)
        click.echo(f"nothing left running in {where}")
        return
    survivors = kill_tree(found)
    remove_stale_temp_dirs(scope=scope, token=owner)
    if survivors:
        _fail(f"{len(survivors)} process(es) survived SIGKILL", 1)
    click.echo(f"stopped {len(found)} process(es), removed {len(dirs)} temp dir(s) in {where}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--timeout", "bound", type=float, default=60.0, show_default=True,
              help="Seconds to wait for ready or an exit before calling it a hang.")
@click.option("--confirm", type=float, default=2.0, show_default=True,
              help="Seconds the worker must stay up after its ready line.")
@click.option("--stop-timeout", type=float, default=15.0, show_default=True,
              help="After ready or a hang: seconds between SIGTERM and SIGKILL.")
@click.option("--json", "as_json", is_flag=True, help="Print the facts and the class as JSON.")
@click.option("--full-output", is_flag=True, help="Print all captured output, not only its tail.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def diagnose(bound: float, confirm: float, stop_timeout: float, as_json: bool, full_output: bool,
             command: tuple[str, ...]) -> None:
    """Run your own worker command and say how its start ended: `lab diagnose -- celery -A proj worker`.

    Exit status: 0 ready, 1 failed loudly, 3 silent exit, 4 hang.
    """
    import json

    from lab.diagnose import EXIT_CODES, diagnose_command, render

    facts = diagnose_command(list(command), bound=bound, confirm=confirm, stop_bound=stop_timeout)
    if as_json:
        click.echo(json.dumps(facts, indent=2, default=str))
    else:
        click.echo(render(facts, full_output=full_output))
    sys.exit(EXIT_CODES[facts["classification"]["klass"]])


if __name__ == "__main__":
    main()
