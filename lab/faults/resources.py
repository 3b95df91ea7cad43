"""Fault family `resources`: the resource limits a worker starts under.

Contract: `Limit` names the limits a matrix may ask for; `nofile(limit)`
is the RLIMIT_NOFILE (soft = hard) it stands for and `wrapper(limit)` the
argv prefix (`prlimit --nofile=N:N --`, util-linux) that starts the worker
under it:
  nofile-high  as high as this host allows: /proc/sys/fs/nr_open for root
               (1048576 on most kernels; container images often inherit it),
               else the lab's own hard limit;
  nofile-low   NOFILE_LOW descriptors, below what a worker opens.
`baseline()` is the limit the lab itself runs with (the comparison).
"""

from __future__ import annotations

import enum
import os
import resource

NOFILE_LOW = 64


class Limit(str, enum.Enum):
    NOFILE_HIGH = "nofile-high"
    NOFILE_LOW = "nofile-low"


def baseline() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def nofile(limit: Limit | str) -> int:
    limit = Limit(limit)
    if limit == Limit.NOFILE_LOW:
        return NOFILE_LOW
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if os.geteuid() == 0:
        try:
            with open("/proc/sys/fs/nr_open") as fh:
                return int(fh.read().strip())
        except (OSError, ValueError):
            pass
    return hard if hard != resource.RLIM_INFINITY else 1 << 20


def wrapper(limit: Limit | str) -> list[str]:
    n = nofile(limit)
    return ["prlimit", f"--nofile={n}:{n}", "--"]
