"""Load, validate and expand matrices/*.toml into Cells.

Contract: `load_matrix(path)` either returns a Matrix whose every name is known
or raises MatrixError naming the file, the field and the allowed values —
before anything starts. `Matrix.cells()` is the deterministic cross product
minus exclusions; `Cell.cell_id` is stable across runs (it keys results).
The catalog of known names is passed in (lab.catalog), so this module stays
standard-library only and importable by the noxfile.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from lab import catalog

MATRIX_KEYS = {
    "description": str, "celery": list, "pools": list, "brokers": list,
    "backends": list, "scenarios": list, "repeats": int, "concurrency": int,
    "lanes": int, "seed": int, "budget_minutes": int,
}
TOP_KEYS = {"matrix", "pins", "profiles", "scenario", "exclude"}
SCENARIO_KEYS = {"profiles", "modes", "repeats", "pools", "brokers", "backends", "celery"}
EXCLUDE_KEYS = {"celery", "pool", "broker", "backend", "scenario", "profile", "mode", "reason"}
PIN_KEYS = {"kombu", "billiard", "redis", "sqlalchemy", "gevent", "eventlet", "extra"}
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

    @property
    def cell_id(self) -> str:
        parts = [self.scenario, f"celery-{self.celery}", self.pool, self.broker,
                 f"be-{self.backend}", self.profile, self.mode]
        return "--".join(p.replace("/", "_").replace("+", "_") for p in parts)

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
    lanes: int
    seed: int
    budget_minutes: int | None
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
                axes = itertools.product(
                    opts.get("celery") or self.celery, opts.get("pools") or self.pools,
                    opts.get("brokers") or self.brokers, opts.get("backends") or self.backends,
                    profiles, modes,
                )
                for celery, pool, broker, backend, profile, mode in axes:
                    cell = Cell(celery, pool, broker, catalog.resolve_backend(backend, broker),
                                scenario, profile, mode, repeats, self.concurrency, self.seed)
                    if not self._excluded(cell) and cell.cell_id not in seen:
                        seen.add(cell.cell_id)
                        out.append(cell)
        return out

    def _excluded(self, cell: Cell) -> bool:
        values = cell.to_dict()
        return any(all(values.get(k) == v for k, v in rule.items() if k != "reason")
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
            raise MatrixError(file, f"matrix.{key}", f"must be a {kind.__name__}, got {head[key]!r}")
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
        repeats=_positive(file, "matrix.repeats", head.get("repeats", 1)),
        concurrency=_positive(file, "matrix.concurrency", head.get("concurrency", 2)),
        lanes=_positive(file, "matrix.lanes", head.get("lanes", 2)),
        seed=head.get("seed", 1), budget_minutes=head.get("budget_minutes"), profiles=profiles,
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
    if "profiles" in opts:  # every profile applies to every scenario: it is the worker's configuration
        checked["profiles"] = _names(file, f"{where}.profiles", opts["profiles"], known_profiles)
    if "modes" in opts:
        checked["modes"] = _names(file, f"{where}.modes", opts["modes"], spec.modes)
    for axis, allowed in (("pools", catalog.POOLS), ("brokers", catalog.BROKERS),
                          ("backends", catalog.BACKENDS)):
        if axis in opts:
            checked[axis] = _names(file, f"{where}.{axis}", opts[axis], allowed)
    if "celery" in opts:
        checked["celery"] = _names(file, f"{where}.celery", opts["celery"], matrix.celery)
    if "repeats" in opts:
        checked["repeats"] = _positive(file, f"{where}.repeats", opts["repeats"])
    return checked


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
