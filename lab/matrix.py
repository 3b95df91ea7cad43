"""Load, validate and expand matrices/*.toml into Cells.

Contract: `load_matrix(path)` either returns a Matrix whose every name is known
or raises MatrixError naming the file, the field and the allowed values (or
the bounds and why: BOUNDS; a scenario's profiles: `scenario_profiles`) —
before anything starts. `Matrix.cells()` is the deterministic cross product
minus exclusions; `Cell.cell_id` is stable across runs (it keys results).
The catalog of known names is passed in (lab.catalog), so this module stays
standard-library only and importable by the noxfile.
"""

from __future__ import annotations

import itertools
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from lab import catalog
from lab import deps as depsets
from lab.deps import DEFAULT, DEFAULT_PYTHON, DEPENDENCIES, UNPINNED

MATRIX_KEYS = {
    "description": str, "celery": list, "pools": list, "brokers": list,
    "backends": list, "scenarios": list, "repeats": int, "concurrency": int,
    "lanes": (int, str), "seed": int, "budget_minutes": int, "python": list,
    **{name: list for name in DEPENDENCIES},   # dependency axes: versions, "default", "unpinned"
}
TOP_KEYS = {"matrix", "pins", "profiles", "scenario", "exclude"}
SCENARIO_KEYS = {"profiles", "modes", "repeats", "pools", "brokers", "backends", "celery", "python",
                 *DEPENDENCIES}
EXCLUDE_KEYS = {"celery", "pool", "broker", "backend", "scenario", "profile", "mode", "reason", "python",
                *DEPENDENCIES}
PIN_KEYS = {*DEPENDENCIES, "extra"}
PYTHON_RE = r"^\d+\.\d+$"
VERSION_RE = r"^\d+(\.\d+)*([a-z]+\d+)?(\.post\d+)?$"
PROFILE_KEYS = {"settings", "env", "description", "stdio", "worker_args"}


class MatrixError(ValueError):
    def __init__(self, file: str, field: str, message: str, allowed: Any = None):
        self.file, self.field = file, field
        text = f"{file}: {field}: {message}"
        if allowed is not None:
            text += "; allowed: " + ", ".join(str(a) for a in allowed)
        super().__init__(text)


@dataclass(frozen=True)
class Cell:
    celery: str
    pool: str
    broker: str
    backend: str
    scenario: str
    profile: str
    mode: str
    repeats: int = 1
    concurrency: int = 2
    seed: int = 1
    python: str = DEFAULT_PYTHON
    deps: dict = field(default_factory=dict, hash=False)  # pins that differ from the lab's default

    @property
    def cell_id(self) -> str:
        """Stable key of a cell; the Python and pins appear only when not the lab's default."""
        parts = [self.scenario, f"celery-{self.celery}", self.pool, self.broker,
                 f"be-{self.backend}", self.profile, self.mode]
        if self.python != DEFAULT_PYTHON:
            parts.append(f"py{self.python}")
        parts += [f"{name}-{value}" for name, value in sorted(self.deps.items())]
        return "--".join(p.replace("/", "_").replace("+", "_") for p in parts)

    def depset(self, extra: list[str] | None = None) -> depsets.DepSet:
        """The exact dependency set (and so the venv) this cell runs in."""
        return depsets.DepSet.make(self.celery, self.python, dict(self.deps), extra)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Cell":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Matrix:
    name: str
    path: str
    description: str
    celery: list[str]
    pools: list[str]
    brokers: list[str]
    backends: list[str]
    scenarios: list[str]
    repeats: int
    concurrency: int
    lanes: int | str  # a number, or "auto" (lab.lanes)
    seed: int
    budget_minutes: int | None
    python: list[str] = field(default_factory=lambda: [DEFAULT_PYTHON])
    dep_axes: dict[str, list[str]] = field(default_factory=dict)
    pins: dict[str, dict[str, str]] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    scenario_options: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    excludes: list[dict[str, str]] = field(default_factory=list)

    def cells(self) -> list[Cell]:
        out: list[Cell] = []
        seen: set[str] = set()
        for scenario in self.scenarios:
            spec = catalog.SCENARIOS[scenario]
            for opts in self.scenario_options.get(scenario) or [{}]:  # slices: their union
                profiles = opts.get("profiles") or [spec.default_profiles[0]]
                modes = opts.get("modes") or [spec.modes[0]]
                repeats = opts.get("repeats", self.repeats)
                names = sorted(set(self.dep_axes) | {n for n in DEPENDENCIES if n in opts})
                dep_values = [opts.get(n) or self.dep_axes.get(n) or [DEFAULT] for n in names]
                axes = itertools.product(
                    opts.get("celery") or self.celery, opts.get("pools") or self.pools,
                    opts.get("brokers") or self.brokers, opts.get("backends") or self.backends,
                    profiles, modes, opts.get("python") or self.python, itertools.product(*dep_values),
                )
                for celery, pool, broker, backend, profile, mode, python, chosen in axes:
                    requested = {**self.version_pins(celery), **{n: v for n, v in zip(names, chosen) if v != DEFAULT}}
                    cell = Cell(celery, pool, broker, catalog.resolve_backend(backend, broker),
                                scenario, profile, mode, repeats, self.concurrency, self.seed,
                                python, depsets.deviations(celery, requested))
                    if not self._excluded(cell) and cell.cell_id not in seen:
                        seen.add(cell.cell_id)
                        out.append(cell)
        return out

    def version_pins(self, celery: str) -> dict[str, str]:
        """This matrix's [pins."<celery>"] as exact pins (its `extra` NAME==VER tokens included)."""
        table = dict(self.pins.get(celery, {}))
        exact, _ = depsets.parse_extra(table.pop("extra", ""))
        return {**{depsets.canonical(k): v for k, v in table.items()}, **exact}

    def extra_requirements(self, celery: str) -> list[str]:
        """Requirement strings of [pins."<celery>"].extra that are not NAME==VER."""
        return depsets.parse_extra(self.pins.get(celery, {}).get("extra", ""))[1]

    def _excluded(self, cell: Cell) -> bool:
        values = {**cell.to_dict(), **cell.deps}
        return any(all(str(values.get(k, DEFAULT)) == v for k, v in rule.items() if k != "reason")
                   for rule in self.excludes)

    def profile(self, name: str) -> dict[str, Any]:
        return self.profiles.get(name) or catalog.PROFILES[name]


def _names(file: str, field: str, values: Any, allowed: set[str] | list[str]) -> list[str]:
    if not isinstance(values, list) or not values:
        raise MatrixError(file, field, f"must be a non-empty list, got {values!r}")
    for index, value in enumerate(values):
        if value not in allowed:
            raise MatrixError(file, f"{field}[{index}]", f"unknown value {value!r}", sorted(allowed))
    return list(values)


def _keys(file: str, field: str, table: Any, allowed: set[str] | dict) -> dict:
    if not isinstance(table, dict):
        raise MatrixError(file, field, f"must be a table, got {type(table).__name__}")
    for key in table:
        if key not in allowed:
            raise MatrixError(file, f"{field}.{key}" if field else key, "unknown key", sorted(allowed))
    return table


def _versions(file: str, values: Any) -> list[str]:
    if not isinstance(values, list) or not values:
        raise MatrixError(file, "matrix.celery", "must be a non-empty list of versions like \"5.6.2\"")
    for index, value in enumerate(values):
        parts = str(value).split(".")
        if not (isinstance(value, str) and len(parts) >= 2 and all(p.isdigit() for p in parts)):
            raise MatrixError(file, f"matrix.celery[{index}]",
                              f"{value!r} is not an exact release like \"5.6.2\"")
    return list(values)


def parse_matrix(data: dict[str, Any], file: str, name: str) -> Matrix:
    _keys(file, "", data, TOP_KEYS)
    head = _keys(file, "matrix", data.get("matrix", {}), MATRIX_KEYS)
    for key, kind in MATRIX_KEYS.items():
        if key in head and not isinstance(head[key], kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise MatrixError(file, f"matrix.{key}", f"must be a {names}, got {head[key]!r}")
    profiles = {}
    for pname, table in _keys(file, "profiles", data.get("profiles", {}), set(data.get("profiles", {}))).items():
        _keys(file, f"profiles.{pname}", table, PROFILE_KEYS)
        profiles[pname] = {"settings": dict(table.get("settings", {})), "env": dict(table.get("env", {})),
                           "description": table.get("description", "matrix-defined profile")}
        profiles[pname].update(_worker_keys(file, f"profiles.{pname}", table))
    known_profiles = set(catalog.PROFILES) | set(profiles)
    matrix = Matrix(
        name=name, path=file, description=head.get("description", ""),
        celery=_versions(file, head.get("celery")),
        pools=_names(file, "matrix.pools", head.get("pools", list(catalog.POOLS)), catalog.POOLS),
        brokers=_names(file, "matrix.brokers", head.get("brokers", ["redis"]), catalog.BROKERS),
        backends=_names(file, "matrix.backends", head.get("backends", ["auto"]), catalog.BACKENDS),
        scenarios=_names(file, "matrix.scenarios", head.get("scenarios"), catalog.SCENARIOS),
        repeats=_bounded(file, "matrix.repeats", head.get("repeats", 1)),
        concurrency=_bounded(file, "matrix.concurrency", head.get("concurrency", 2)),
        lanes=_lanes(file, head.get("lanes", 2)),
        seed=head.get("seed", 1), budget_minutes=_budget(file, head.get("budget_minutes")),
        profiles=profiles,
        python=_pythons(file, "matrix.python", head.get("python", [DEFAULT_PYTHON])),
        dep_axes={n: _dep_values(file, f"matrix.{n}", head[n]) for n in DEPENDENCIES if n in head},
    )
    for version, pins in _keys(file, "pins", data.get("pins", {}), set(matrix.celery)).items():
        matrix.pins[version] = {k: str(v) for k, v in _keys(file, f"pins.{version}", pins, PIN_KEYS).items()}
    for sname, slices in _keys(file, "scenario", data.get("scenario", {}), set(matrix.scenarios)).items():
        if isinstance(slices, dict):
            slices = [slices]
        for index, opts in enumerate(slices):
            where = f"scenario.{sname}" if len(slices) == 1 else f"scenario.{sname}[{index}]"
            matrix.scenario_options.setdefault(sname, []).append(
                _scenario_slice(file, where, sname, opts, matrix, known_profiles))
    excludes = data.get("exclude", [])
    if not isinstance(excludes, list):
        raise MatrixError(file, "exclude", "must be an array of tables ([[exclude]])")
    for index, rule in enumerate(excludes):
        _keys(file, f"exclude[{index}]", rule, EXCLUDE_KEYS)
        matrix.excludes.append({k: str(v) for k, v in rule.items()})
    return matrix


def _scenario_slice(file: str, where: str, sname: str, opts: Any, matrix: Matrix,
                    known_profiles: set[str]) -> dict[str, Any]:
    """Validate one [scenario.NAME] table (or one [[scenario.NAME]] slice)."""
    _keys(file, where, opts, SCENARIO_KEYS)
    spec = catalog.SCENARIOS[sname]
    checked = dict(opts)
    if "profiles" in opts:
        checked["profiles"] = _names(file, f"{where}.profiles", opts["profiles"],
                                     scenario_profiles(spec, set(matrix.profiles)))
    if "modes" in opts:
        checked["modes"] = _names(file, f"{where}.modes", opts["modes"], spec.modes)
    for axis, allowed in (("pools", catalog.POOLS), ("brokers", catalog.BROKERS),
                          ("backends", catalog.BACKENDS)):
        if axis in opts:
            checked[axis] = _names(file, f"{where}.{axis}", opts[axis], allowed)
    if "celery" in opts:
        checked["celery"] = _names(file, f"{where}.celery", opts["celery"], matrix.celery)
    if "repeats" in opts:
        checked["repeats"] = _bounded(file, f"{where}.repeats", opts["repeats"])
    if "python" in opts:
        checked["python"] = _pythons(file, f"{where}.python", opts["python"])
    for name in DEPENDENCIES:
        if name in opts:
            checked[name] = _dep_values(file, f"{where}.{name}", opts[name])
    return checked


def _pythons(file: str, field: str, values: Any) -> list[str]:
    if not isinstance(values, list) or not values:
        raise MatrixError(file, field, f"must be a non-empty list like [\"3.9\", \"3.12\"], got {values!r}")
    for index, value in enumerate(values):
        if value != DEFAULT_PYTHON and not (isinstance(value, str) and re.match(PYTHON_RE, value)):
            raise MatrixError(file, f"{field}[{index}]", f"{value!r} is not a Python version like \"3.9\" "
                              f"(or \"{DEFAULT_PYTHON}\", the lab's own interpreter)")
    return list(values)


def _dep_values(file: str, field: str, values: Any) -> list[str]:
    if not isinstance(values, list) or not values:
        raise MatrixError(file, field, f"must be a non-empty list of versions, got {values!r}")
    for index, value in enumerate(values):
        if value not in (DEFAULT, UNPINNED) and not (isinstance(value, str) and re.match(VERSION_RE, value)):
            raise MatrixError(file, f"{field}[{index}]", f"{value!r} is not an exact version like \"4.3.0\" "
                              f"(or \"{DEFAULT}\": the lab's default, \"{UNPINNED}\": drop the era pin)")
    return list(values)


def scenario_profiles(spec: catalog.ScenarioInfo, custom: set[str]) -> list[str]:
    """The profiles a scenario can run. A profile is the worker's configuration
    (settings, env, stdio, worker_args), so every catalog profile and every
    [profiles.NAME] of the matrix applies to every scenario (issue 11) — except
    where a scenario's profile axis is its plan (`ScenarioInfo.profile_is_plan`:
    shutdown-race's signal plans): there only its own plans and the matrix's own
    profiles fit; another catalog profile would quietly run the default plan
    (issue 16)."""
    if spec.profile_is_plan:  # its own plans, or a plan the matrix defines
        return list(spec.default_profiles) + sorted(custom)
    plans = {p for s in catalog.SCENARIOS.values() if s.profile_is_plan for p in s.default_profiles}
    return list(spec.default_profiles) + sorted((set(catalog.PROFILES) - plans - set(spec.default_profiles))
                                                | custom)


# (low, high, why): a value outside is refused at load, before anything starts
BOUNDS = {
    "repeats": (1, 1000, "each repeat is a real worker run of the cell (1000 gives a rate below 0.4% "
                         "at 0 of 1000; `lab triage -n` is for more)"),
    "lanes": (1, 16, "each lane runs a cell with its own broker and workers at once; a fixed number "
                     "far beyond the cores distorts timing-sensitive verdicts (\"auto\" admits up to "
                     "8 x cores by measured CPU load instead: lab.lanes.AUTO_LANES_PER_CORE)"),
    "concurrency": (1, 64, "pool processes / threads / greenlets per worker; the scenarios' workloads "
                           "use a handful"),
}
BUDGET_MAX_MINUTES = 7 * 24 * 60


def _bounded(file: str, field: str, value: Any) -> int:
    """A positive integer within BOUNDS[the field's last part]; MatrixError says the bound and why."""
    value = _positive(file, field, value)
    low, high, why = BOUNDS[field.rsplit(".", 1)[-1]]
    if not low <= value <= high:
        raise MatrixError(file, field, f"{value} is outside {low}..{high}: {why}")
    return value


def _lanes(file: str, value: Any) -> int | str:
    """matrix.lanes: a number within BOUNDS, or "auto" (lab.lanes: admitted by measured CPU load)."""
    if isinstance(value, str):
        if value != "auto":
            raise MatrixError(file, "matrix.lanes", f"{value!r}: a number of lanes or \"auto\"")
        return value
    return _bounded(file, "matrix.lanes", value)


def _budget(file: str, value: Any) -> int | None:
    """budget_minutes: absent, or minutes in 1..one week (`lab plan` refuses a plan over it)."""
    if value is None:
        return None
    value = _positive(file, "matrix.budget_minutes", value)
    if value > BUDGET_MAX_MINUTES:
        raise MatrixError(file, "matrix.budget_minutes", f"{value} is outside 1..{BUDGET_MAX_MINUTES} "
                          "(one week): a budget is the wall time the plan may take")
    return value


def _worker_keys(file: str, where: str, table: dict[str, Any]) -> dict[str, Any]:
    """A profile's worker keys: `stdio` (pipe | tty | file) and `worker_args` (a list of
    strings appended to the worker's command line, e.g. --without-gossip)."""
    out: dict[str, Any] = {}
    if "stdio" in table:
        if table["stdio"] not in catalog.STDIO_MODES:
            raise MatrixError(file, f"{where}.stdio", f"unknown value {table['stdio']!r}",
                              list(catalog.STDIO_MODES))
        out["stdio"] = table["stdio"]
    if "worker_args" in table:
        args = table["worker_args"]
        if not isinstance(args, list) or not all(isinstance(a, str) and a for a in args):
            raise MatrixError(file, f"{where}.worker_args", f"must be a list of strings, got {args!r}")
        out["worker_args"] = list(args)
    return out


def _positive(file: str, field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise MatrixError(file, field, f"must be a positive integer, got {value!r}")
    return value


def resolve_path(name_or_path: str, root: Path | None = None) -> Path:
    root = root or Path(__file__).resolve().parent.parent / "matrices"
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" and candidate.exists():
        return candidate
    named = root / f"{name_or_path}.toml"
    if named.exists():
        return named
    available = sorted(p.stem for p in root.glob("*.toml"))
    raise MatrixError(str(name_or_path), "--matrix", "no such matrix file", available)


def load_matrix(name_or_path: str) -> Matrix:
    path = resolve_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise MatrixError(str(path), "(syntax)", str(exc)) from None
    return parse_matrix(data, str(path), path.stem)
