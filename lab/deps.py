"""Dependency sets: which Python, Celery and pins a cell runs with.

Contract: `DepSet` is the exact identity of one venv — interpreter request,
Celery release and every pin — with a readable `key` ("5.6.2",
"5.6.2-py3.9-billiard4.3.0"; a short hash when long) and the exact
`requirements()` list that is installed into it. `ERA_PINS` is the lab's one
table of pins that make an older Celery installable as it was in its own era
(each with the reason); matrix expansion and triage both apply it through
`effective_pins`. Pin values: an exact version, or UNPINNED to drop an era
pin and let the resolver choose. Standard library only (the noxfile and
Python-3.8 venvs import it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

DEFAULT_PYTHON = "default"   # the interpreter the lab itself runs on
DEFAULT = "default"          # a dependency axis value: the lab's default (era pin or resolver)
UNPINNED = "unpinned"        # drop the era pin: whatever resolves today

# axis / pin name -> distribution name on the package index
DEPENDENCIES = {"kombu": "kombu", "billiard": "billiard", "redis": "redis", "amqp": "amqp",
                "gevent": "gevent", "eventlet": "eventlet", "sqlalchemy": "SQLAlchemy"}

# Extras every Celery venv gets: exact pins on the lab's default Python; on an explicitly chosen
# Python they are resolved for that interpreter (these releases need a recent Python).
LAB_EXTRAS = {"gevent": "26.9.0", "eventlet": "0.41.3", "psycopg2-binary": "2.9.13"}


@dataclass(frozen=True)
class EraPin:
    celery_prefix: str          # "5.3." matches 5.3.0 ... 5.3.6
    pins: Tuple[Tuple[str, str], ...]
    reason: str


ERA_PINS = (
    EraPin("5.3.", (("kombu", "5.3.7"), ("packaging", "26.3")),
           "kombu 5.7.0 (what celery 5.3.x's kombu>=5.3.4,<6 resolves to today) imports `packaging` in its "
           "Redis transport (declared only in kombu's own [redis] extra) and requires redis-py >= 6.1, "
           "which celery 5.3.x[redis] caps below 6: the worker cannot even import its transport. "
           "kombu 5.3.7 is the kombu of 5.3.x's era."),
    EraPin("5.4.", (("kombu", "5.3.7"),),
           "as for 5.3.x: celery 5.4.x allows kombu>=5.3.4,<6, which resolves to kombu 5.7.0 and an "
           "unimportable Redis transport (redis-py capped below 6); kombu 5.3.7 was current at 5.4.0's release."),
    EraPin("4.4.", (("sqlalchemy", "1.3.24"),),
           "celery 4.4.x's [sqlalchemy] extra has no upper bound, so SQLAlchemy 2 resolves, and kombu 4.6's "
           "SQL transport then fails to import (`cannot import name 'relation' from 'sqlalchemy.orm'`, "
           "observed on 4.4.7/Python 3.8); 1.3.24 is the SQLAlchemy of its era. (redis-py needs no pin: "
           "4.4.7 with redis-py 6.1.1 passed lifecycle-smoke.)"),
)


def era_pins(celery: str) -> Dict[str, str]:
    """{name: version} the lab applies to this Celery release by default ({} for none)."""
    out: Dict[str, str] = {}
    for era in ERA_PINS:
        if celery.startswith(era.celery_prefix):
            out.update(dict(era.pins))
    return out


def era_reasons(celery: str) -> List[str]:
    return [era.reason for era in ERA_PINS if celery.startswith(era.celery_prefix)]


PIN_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!_-]+)\s*$")


def parse_pin(text: str) -> Tuple[str, str]:
    """'billiard==4.3.0' -> ('billiard', '4.3.0'); 'kombu==unpinned' drops an era pin.

    Raises ValueError naming the input when it is not NAME==VERSION.
    """
    found = PIN_RE.match(text)
    if not found:
        raise ValueError(f"{text!r} is not NAME==VERSION (e.g. billiard==4.3.0, kombu==unpinned)")
    return canonical(found.group(1)), found.group(2)


def canonical(name: str) -> str:
    """Pin names are lower-case; 'SQLAlchemy' and 'sqlalchemy' are one pin."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_extra(extra: str) -> Tuple[Dict[str, str], List[str]]:
    """A matrix's free-form `extra = "packaging==26.3 foo>=1"`: (exact pins, other requirement strings)."""
    pins, other = {}, []
    for token in extra.split():
        try:
            name, version = parse_pin(token)
            pins[name] = version
        except ValueError:
            other.append(token)
    return pins, other


def effective_pins(celery: str, *layers: Dict[str, str], use_era: bool = True) -> Dict[str, str]:
    """Era pins, then each layer in order (later wins); UNPINNED and DEFAULT values are resolved away.

    DEFAULT keeps whatever the earlier layers said; UNPINNED removes the pin.
    """
    pins = dict(era_pins(celery)) if use_era else {}
    for layer in layers:
        for name, value in layer.items():
            name = canonical(name)
            if value == DEFAULT:
                continue
            if value == UNPINNED:
                pins.pop(name, None)
            else:
                pins[name] = value
    return dict(sorted(pins.items()))


def deviations(celery: str, requested: Dict[str, str]) -> Dict[str, str]:
    """The requested pins that differ from the lab's default for this Celery (they go into cell ids)."""
    era = era_pins(celery)
    out = {}
    for name, value in requested.items():
        name = canonical(name)
        if value == DEFAULT or era.get(name) == value or (value == UNPINNED and name not in era):
            continue
        out[name] = value
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class DepSet:
    """One venv's identity. `pins` are effective (era pins included), sorted."""

    celery: str
    python: str = DEFAULT_PYTHON
    pins: Tuple[Tuple[str, str], ...] = ()
    extra: Tuple[str, ...] = ()
    deviation: Tuple[Tuple[str, str], ...] = field(default=(), compare=False)

    @classmethod
    def make(cls, celery: str, python: str = DEFAULT_PYTHON, requested: Dict[str, str] | None = None,
             extra: List[str] | None = None) -> "DepSet":
        requested = dict(requested or {})
        pins = effective_pins(celery, requested)
        return cls(celery, python or DEFAULT_PYTHON, tuple(pins.items()), tuple(sorted(extra or ())),
                   tuple(deviations(celery, requested).items()))

    @property
    def key(self) -> str:
        """'5.6.2' for the lab's default set; non-default parts appended; hashed past 60 chars."""
        parts = [self.celery]
        if self.python != DEFAULT_PYTHON:
            parts.append(f"py{self.python}")
        parts += [f"{name}{value}" for name, value in self.deviation]
        if self.extra:
            parts.append("x" + hashlib.sha1(" ".join(self.extra).encode()).hexdigest()[:6])
        key = "-".join(parts)
        if len(key) > 60:
            key = f"{self.celery}-{self.digest()[:10]}"
        return re.sub(r"[^A-Za-z0-9._-]", "_", key)

    def requirements(self) -> List[str]:
        """Exact requirement strings for this set (Celery, its extras, pins), lab excluded."""
        pins = dict(self.pins)
        reqs = [f"celery[redis,sqlalchemy]=={self.celery}"]
        for name, version in LAB_EXTRAS.items():
            if name in pins:
                continue
            reqs.append(f"{name}=={version}" if self.python == DEFAULT_PYTHON else name)
        reqs += [f"{name}=={version}" for name, version in pins.items()]
        return reqs + list(self.extra)

    def digest(self) -> str:
        text = "\n".join([f"python={self.python}", *self.requirements()])
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict:
        return {"key": self.key, "celery": self.celery, "python": self.python, "pins": dict(self.pins),
                "extra": list(self.extra), "deviation": dict(self.deviation),
                "requirements": self.requirements()}

    @classmethod
    def from_dict(cls, data: dict) -> "DepSet":
        return cls(data["celery"], data.get("python", DEFAULT_PYTHON),
                   tuple(sorted((data.get("pins") or {}).items())), tuple(data.get("extra") or ()),
                   tuple(sorted((data.get("deviation") or {}).items())))
