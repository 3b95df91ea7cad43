"""Dependency sets: era pins, set keys, axes in matrices, venv identity (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import deps, venvs
from lab.deps import DepSet
from lab.interpreters import InterpreterMissing, find_python
from lab.matrix import MatrixError, load_matrix, parse_matrix
from lab.plan import make_plan, write_plan
from lab.results import create_run_dir, read_records


def base(**over):
    data = {"matrix": {"celery": ["5.6.2"], "pools": ["solo"], "brokers": ["redis"],
                       "scenarios": ["lifecycle-smoke"]}}
    data["matrix"].update(over)
    return data


def test_era_pins_are_one_table_with_reasons():
    assert deps.era_pins("5.3.6") == {"kombu": "5.3.7", "packaging": "26.3"}
    assert deps.era_pins("5.4.0") == {"kombu": "5.3.7"}
    assert deps.era_pins("5.6.2") == {}
    assert all(era.reason for era in deps.ERA_PINS)


def test_default_matrix_pins_equal_the_era_pins_so_ids_and_sets_stay():
    matrix = load_matrix("default")
    plan = make_plan(matrix, "r")
    # 5.5.0, 5.6.3: where findings flip; 5.3.6 with its era's redis-py for celery#8030's flap
    assert sorted(plan["sets"]) == ["5.3.6", "5.3.6-redis4.6.0", "5.5.0", "5.5.3", "5.6.2", "5.6.3", "5.7.0"]
    assert "kombu==5.3.7" in plan["sets"]["5.3.6"]["requirements"]
    assert "redis==4.6.0" in plan["sets"]["5.3.6-redis4.6.0"]["requirements"]
    assert all("--py" not in c.cell_id and "kombu" not in c.cell_id for c in matrix.cells())


def test_set_keys_name_non_default_parts():
    assert DepSet.make("5.6.2").key == "5.6.2"
    assert DepSet.make("5.6.2", "3.9", {"billiard": "4.3.0"}).key == "5.6.2-py3.9-billiard4.3.0"
    assert DepSet.make("5.3.6", requested={"kombu": "5.3.7"}).key == "5.3.6"          # the era pin itself
    unpinned = DepSet.make("5.3.6", requested={"kombu": "unpinned"})
    assert unpinned.key == "5.3.6-kombuunpinned" and "kombu==5.3.7" not in unpinned.requirements()
    long = DepSet.make("5.6.2", "3.12", {n: "1.0.0" for n in deps.DEPENDENCIES})
    assert len(long.key) <= 60 and long.key.startswith("5.6.2-")


def test_pinned_and_unpinned_sets_never_share_an_identity():
    plain, pinned = DepSet.make("5.6.2"), DepSet.make("5.6.2", requested={"billiard": "4.3.0"})
    assert plain.key != pinned.key and plain.digest() != pinned.digest()
    assert "billiard==4.3.0" in pinned.requirements() and not any("billiard" in r for r in plain.requirements())


def test_parse_pin():
    assert deps.parse_pin("SQLAlchemy==1.4.54") == ("sqlalchemy", "1.4.54")
    with pytest.raises(ValueError, match="NAME==VERSION"):
        deps.parse_pin("billiard>=4")


def test_python_and_dependency_axes_expand_like_pools():
    data = base(python=["default", "3.12"], billiard=["default", "4.3.0"])
    cells = parse_matrix(data, "m.toml", "m").cells()
    ids = sorted(c.cell_id for c in cells)
    assert len(ids) == 4
    assert "lifecycle-smoke--celery-5.6.2--solo--redis--be-redis--defaults--default" in ids
    assert "lifecycle-smoke--celery-5.6.2--solo--redis--be-redis--defaults--default--py3.12--billiard-4.3.0" in ids
    keys = {c.depset().key for c in cells}
    assert keys == {"5.6.2", "5.6.2-py3.12", "5.6.2-billiard4.3.0", "5.6.2-py3.12-billiard4.3.0"}


def test_per_version_pins_that_differ_from_the_era_go_into_cell_ids():
    data = base()
    data["pins"] = {"5.6.2": {"billiard": "4.3.0"}}
    (cell,) = parse_matrix(data, "m.toml", "m").cells()
    assert cell.cell_id.endswith("--billiard-4.3.0") and cell.depset().key == "5.6.2-billiard4.3.0"


def test_scenario_slices_take_axes_and_excludes_see_them():
    data = base(celery=["5.3.6", "5.6.2"])
    data["scenario"] = {"lifecycle-smoke": [{"celery": ["5.3.6"], "kombu": ["default", "unpinned"]}]}
    data["exclude"] = [{"kombu": "unpinned", "pool": "solo"}]
    cells = parse_matrix(data, "m.toml", "m").cells()
    assert [c.cell_id for c in cells] == ["lifecycle-smoke--celery-5.3.6--solo--redis--be-redis--defaults--default"]


@pytest.mark.parametrize("over,needle", [
    ({"python": ["3"]}, "matrix.python[0]: '3' is not a Python version"),
    ({"python": "3.9"}, "matrix.python: must be a list"),
    ({"billiard": ["latest"]}, "matrix.billiard[0]: 'latest' is not an exact version"),
    ({"kombu": []}, "matrix.kombu: must be a non-empty list"),
])
def test_axis_errors_name_the_field(over, needle):
    with pytest.raises(MatrixError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        parse_matrix(base(**over), "m.toml", "m")


def test_full_has_a_python_axis_and_a_dependency_axis():
    full = load_matrix("full")
    cells = full.cells()
    assert {c.python for c in cells} >= {"default", "3.9", "3.12"}
    assert any(c.deps for c in cells)


def test_missing_interpreter_says_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    find_python.cache_clear()
    with pytest.raises(InterpreterMissing, match=r"no Python 3\.99 interpreter.*LAB_PYTHON_3_99"):
        find_python("3.99")
    find_python.cache_clear()


# failing input 2: a pin leaks into later runs -------------------------------------------------------

@pytest.fixture
def fake_build(monkeypatch):
    """ensure_venv with the uv calls replaced: records builds; a venv holds its requirement list."""
    built = []

    def build(path, depset, base_python):
        (path / "bin").mkdir(parents=True)
        (path / "bin" / "python").write_text("")
        (path / "installed.txt").write_text("\n".join(depset.requirements()))
        built.append(depset.key)
        return str(path / "bin" / "python")

    monkeypatch.setattr(venvs, "_build", build)
    monkeypatch.setattr(venvs, "find_python", lambda wanted: ("/usr/bin/python3", "3.11.7"))
    return built


def test_a_pinned_run_leaves_the_unpinned_venv_untouched(tmp_path, fake_build):
    plain = venvs.ensure_venv(DepSet.make("5.6.2"), tmp_path)
    pinned = venvs.ensure_venv(DepSet.make("5.6.2", requested={"billiard": "4.3.0"}), tmp_path)
    again = venvs.ensure_venv(DepSet.make("5.6.2"), tmp_path)
    assert plain.path == again.path != pinned.path
    assert (plain.created, pinned.created, again.created) == (True, True, False)
    assert "billiard" not in (again.path / "installed.txt").read_text()
    assert "billiard==4.3.0" in (pinned.path / "installed.txt").read_text()


def test_a_venv_whose_stamp_differs_is_rebuilt_not_reused(tmp_path, fake_build):
    plain = DepSet.make("5.6.2")
    venv = venvs.ensure_venv(plain, tmp_path)
    stamp = json.loads((venv.path / venvs.STAMP).read_text())
    stamp["requirements"].append("billiard==4.3.0")   # e.g. a venv someone pinned by hand, or an old layout
    (venv.path / venvs.STAMP).write_text(json.dumps(stamp))
    (venv.path / "installed.txt").write_text("billiard==4.3.0")
    rebuilt = venvs.ensure_venv(plain, tmp_path, log=lambda *_: None)
    assert rebuilt.created and "billiard" not in (rebuilt.path / "installed.txt").read_text()
    assert fake_build == ["5.6.2", "5.6.2"]


def test_a_venv_without_stamp_is_rebuilt(tmp_path, fake_build):
    (tmp_path / "set-5.6.2" / "bin").mkdir(parents=True)
    (tmp_path / "set-5.6.2" / "bin" / "python").write_text("")
    assert venvs.ensure_venv(DepSet.make("5.6.2"), tmp_path, log=lambda *_: None).created


# sets: a bad set becomes records, never a crash ---------------------------------------------------

def _plan(tmp_path, data):
    matrix = parse_matrix(data, str(tmp_path / "m.toml"), "m")
    run_dir = create_run_dir(tmp_path, "r1")
    write_plan(run_dir, make_plan(matrix, "r1"))
    return run_dir


def test_unresolvable_set_is_setup_failed_naming_the_conflict(tmp_path, monkeypatch):
    from lab import sets
    run_dir = _plan(tmp_path, base(billiard=["4.2.0"], python=["default", "3.99"]))
    uv_text = ("error: No solution found when resolving dependencies\n  cause: Because celery==5.6.2 depends "
               "on billiard>=4.2.1,<5.0 and you require celery[redis]==5.6.2, we can conclude that you "
               "require billiard>=4.2.1,<5.0.\n         And because you require billiard==4.2.0, we can "
               "conclude that your requirements are unsatisfiable.")

    def ensure(depset, root, log=None):
        if depset.python == "3.99":
            raise InterpreterMissing("no Python 3.99 interpreter on this machine")
        raise venvs.SetupFailed(uv_text)

    monkeypatch.setattr(sets, "ensure_venv", ensure)
    lines = sets.run_sets(run_dir, log=lambda *_: None)
    assert len(lines) == 2
    records = {r.cell_id: r for r in read_records([run_dir])}
    failed = records["lifecycle-smoke--celery-5.6.2--solo--redis--be-redis--defaults--default--billiard-4.2.0"]
    assert failed.outcome.verdict.value in ("setup-failed", "error")
    assert failed.outcome.verdict.value == "setup-failed" or failed.outcome.signature == "setup-failed"
    assert "depends on billiard>=4.2.1,<5.0" in failed.outcome.summary
    missing = records["lifecycle-smoke--celery-5.6.2--solo--redis--be-redis--defaults--default--py3.99--billiard-4.2.0"]
    assert missing.outcome.verdict.value == "n/a" and "no Python 3.99" in missing.outcome.summary
    assert sets.run_sets(run_dir, log=lambda *_: None) == []   # all recorded: nothing to redo


def test_transport_probe_names_an_unimportable_transport():
    pytest.importorskip("kombu")
    from lab.sides import transport_probe
    assert transport_probe("memory://", "") is None
    problem = transport_probe("nosuchtransport://localhost", "")
    assert problem and problem.startswith("kombu transport for nosuchtransport:")


def test_conflict_line_is_the_resolvers_reason():
    from lab.sets import conflict
    text = ("installing ... failed (exit 1):\nerror: No solution found when resolving dependencies\n"
            "  cause: Because celery==5.6.2 depends on billiard>=4.2.1,<5.0 and you require celery==5.6.2, we can "
            "conclude that you require billiard>=4.2.1,<5.0.\n  And because you require billiard==4.2.0, we can "
            "conclude that your requirements are unsatisfiable.")
    line = conflict(text)
    assert line.startswith("Because celery==5.6.2 depends on billiard>=4.2.1,<5.0") and "billiard==4.2.0" in line
    assert conflict("ERROR: No matching distribution found for celery==9.9") .startswith("ERROR: No matching")


def test_sets_to_run_follow_only_and_skip_recorded_cells(tmp_path):
    from lab.plan import load_plan
    from lab.sets import sets_to_run
    run_dir = _plan(tmp_path, base(python=["default", "3.12"]))
    plan = load_plan(run_dir)
    ids = [c["set"] for c in plan["cells"]]
    assert sets_to_run(plan) == ["5.6.2", "5.6.2-py3.12"] and sorted(ids) == sorted(sets_to_run(plan))
    py312 = "lifecycle-smoke--celery-5.6.2--solo--redis--be-redis--defaults--default--py3.12"
    assert sets_to_run(plan, only=[py312]) == ["5.6.2-py3.12"]
    assert sets_to_run(plan, done={py312}) == ["5.6.2"]


def test_sharded_plans_keep_each_cells_set(tmp_path):
    matrix = parse_matrix(base(python=["default", "3.12"], pools=["solo", "threads"]), "m.toml", "m")
    shards = [make_plan(matrix, f"r{i}", shard=(i, 2)) for i in (1, 2)]
    for plan in shards:
        assert set(plan["sets"]) == {c["set"] for c in plan["cells"]}
    assert sum(len(p["cells"]) for p in shards) == 4
