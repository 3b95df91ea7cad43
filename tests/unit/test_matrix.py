"""Matrix loading, validation errors and expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.matrix import Cell, MatrixError, load_matrix, parse_matrix

MATRICES = Path(__file__).resolve().parents[2] / "matrices"


def parse(text_data: dict) -> object:
    return parse_matrix(text_data, "m.toml", "m")


def base(**over):
    data = {"matrix": {"celery": ["5.6.2"], "pools": ["solo"], "brokers": ["redis"],
                       "scenarios": ["lifecycle-smoke"]}}
    data["matrix"].update(over)
    return data


@pytest.mark.parametrize("name", sorted(p.stem for p in MATRICES.glob("*.toml")))
def test_shipped_matrices_load(name):
    matrix = load_matrix(name)
    assert matrix.cells(), name


def test_smoke_matrix_shape():
    matrix = load_matrix("smoke")
    assert matrix.celery == ["5.6.2"]
    assert set(matrix.pools) == {"prefork", "gevent", "eventlet", "threads", "solo"}
    assert set(matrix.brokers) == {"redis", "sql"}
    assert len(matrix.cells()) == 10


def test_full_covers_default():
    full, default = load_matrix("full"), load_matrix("default")
    assert set(default.celery) <= set(full.celery)
    assert {"5.6.2"} <= set(full.celery)
    minors = {v.rsplit(".", 1)[0] for v in full.celery}
    assert {"5.3", "5.4", "5.5", "5.6", "5.7"} <= minors
    assert {c.cell_id for c in default.cells()} <= {c.cell_id for c in full.cells()}


@pytest.mark.parametrize("field,value,needle", [
    ("pools", ["solo", "prefrok"], "matrix.pools[1]: unknown value 'prefrok'; allowed: eventlet, gevent, prefork, solo, threads"),
    ("brokers", ["kafka"], "matrix.brokers[0]: unknown value 'kafka'; allowed: amqp, redis, sql, sql-postgres"),
    ("scenarios", ["nope"], "matrix.scenarios[0]: unknown value 'nope'"),
    ("celery", ["latest"], "matrix.celery[0]: 'latest' is not an exact release"),
    ("repeats", 0, "matrix.repeats: must be a positive integer"),
])
def test_errors_name_file_field_and_allowed(field, value, needle):
    with pytest.raises(MatrixError) as info:
        parse(base(**{field: value}))
    assert str(info.value).startswith("m.toml: ")
    assert needle in str(info.value)


def test_unknown_keys_are_errors():
    with pytest.raises(MatrixError, match=r"m.toml: matrix.pool: unknown key; allowed: .*pools"):
        parse(base(pool=["solo"]))
    with pytest.raises(MatrixError, match=r"m.toml: colour: unknown key"):
        parse({**base(), "colour": {}})


def test_unknown_profile_in_scenario_section():
    data = base()
    data["scenario"] = {"lifecycle-smoke": {"profiles": ["acks-latte"]}}
    with pytest.raises(MatrixError, match=r"scenario.lifecycle-smoke.profiles\[0\]: unknown value 'acks-latte'"):
        parse(data)


def test_exclusions_and_backend_resolution():
    data = base(pools=["solo", "threads"], brokers=["redis", "sql"])
    data["exclude"] = [{"pool": "threads", "broker": "sql", "reason": "slow"}]
    cells = parse(data).cells()
    assert len(cells) == 3
    assert {(c.pool, c.broker, c.backend) for c in cells} == {
        ("solo", "redis", "redis"), ("solo", "sql", "sqlite"), ("threads", "redis", "redis")}


def test_cell_id_is_stable_and_round_trips():
    cell = Cell("5.6.2", "prefork", "redis", "redis", "lifecycle-smoke", "acks-late+reject", "default")
    assert cell.cell_id == "lifecycle-smoke--celery-5.6.2--prefork--redis--be-redis--acks-late_reject--default"
    assert Cell.from_dict(cell.to_dict()) == cell


def test_missing_matrix_file_lists_available():
    with pytest.raises(MatrixError, match="allowed: .*smoke"):
        load_matrix("no-such-matrix")


def test_pins_must_name_a_matrix_version():
    data = base()
    data["pins"] = {"5.4.0": {"kombu": "5.3.7"}}
    with pytest.raises(MatrixError, match=r"pins.5.4.0: unknown key; allowed: 5.6.2"):
        parse(data)
    data["pins"] = {"5.6.2": {"kombu": "5.6.2"}}
    assert parse(data).pins == {"5.6.2": {"kombu": "5.6.2"}}


def test_scenario_slices_are_a_union():
    data = base(celery=["5.3.6", "5.6.2"], pools=["prefork", "solo"], brokers=["redis", "sql"],
                scenarios=["eviction"])
    data["scenario"] = {"eviction": [
        {"celery": ["5.6.2"], "pools": ["prefork"], "profiles": ["acks-late", "defaults"]},
        {"celery": ["5.3.6"], "brokers": ["redis"], "pools": ["prefork"], "profiles": ["acks-late"]},
    ]}
    cells = parse(data).cells()
    assert len(cells) == 2 * 2 + 1
    with pytest.raises(MatrixError, match=r"scenario.eviction\[1\].profiles\[0\]: unknown value"):
        data["scenario"]["eviction"][1]["profiles"] = ["nope"]
        parse(data)


def test_matrix_defined_profiles_apply_to_every_scenario():
    """Issue 11: a profile is the worker's configuration; no scenario rejects one (max-memory-1k
    used to be refused for lifecycle-smoke and silent-exit)."""
    data = {"matrix": {"celery": ["5.6.2"], "pools": ["prefork"],
                       "scenarios": ["lifecycle-smoke", "silent-exit", "shutdown-race"]},
            "profiles": {"max-memory-1k": {"settings": {"worker_max_memory_per_child": 1}},
                         "tty": {"stdio": "tty", "worker_args": ["--without-mingle"]}},
            "scenario": {"lifecycle-smoke": {"profiles": ["max-memory-1k", "tty", "acks-late"]},
                         "silent-exit": {"profiles": ["max-memory-1k"], "modes": ["baseline"]},
                         "shutdown-race": {"profiles": ["tty"]}}}
    matrix = parse_matrix(data, "m.toml", "m")
    assert {(c.scenario, c.profile) for c in matrix.cells()} == {
        ("lifecycle-smoke", "max-memory-1k"), ("lifecycle-smoke", "tty"), ("lifecycle-smoke", "acks-late"),
        ("silent-exit", "max-memory-1k"), ("shutdown-race", "tty")}
    # shutdown-race's profiles are its signal plans: a catalog worker profile would quietly run the
    # default plan there, so it is refused (issue 16)
    data["scenario"]["shutdown-race"] = {"profiles": ["quiet-startup"]}
    with pytest.raises(MatrixError, match="shutdown-race.profiles"):
        parse_matrix(data, "m.toml", "m")
    assert matrix.profile("tty") == {"settings": {}, "env": {}, "description": "matrix-defined profile",
                                     "stdio": "tty", "worker_args": ["--without-mingle"]}


@pytest.mark.parametrize("table,field", [({"stdio": "socket"}, "profiles.p.stdio"),
                                         ({"worker_args": "--without-gossip"}, "profiles.p.worker_args")])
def test_profile_worker_keys_are_validated(table, field):
    data = {"matrix": {"celery": ["5.6.2"], "scenarios": ["lifecycle-smoke"]}, "profiles": {"p": table}}
    with pytest.raises(MatrixError, match=field.replace(".", r"\.")):
        parse_matrix(data, "m.toml", "m")
