"""Fault family `resources`: the resource limits a worker starts under.

Contract: `Limit` names the limits a matrix may ask for; `nofile(limit)`
is the RLIMIT_NOFILE (soft = hard) it stands for and `wrapper(limit)` the
argv prefix (`prlimit --nofile=N:N --`, util-linux) that starts the worker
under it:
  nofile-high  as high as this host allows: /proc/sys/fs/nr_open (1048576 on
               most kernels; container images often inherit it) when the lab
               may raise its hard limit (probed once with prlimit: root with
               CAP_SYS_RESOURCE), else the lab's own hard limit;
  nofile-low   NOFILE_LOW descriptors, below what a worker opens.
`baseline()` is the comparison: BASELINE_NOFILE (the usual default soft
limit, 1024) or the lab's hard limit if that is lower; `baseline_wrapper()`
starts a worker under it.
"""

from __future__ import annotations

import enum
import functools
import resource
import subprocess

NOFILE_LOW = 64
BASELINE_NOFILE = 1024


class Limit(str, enum.Enum):
    NOFILE_HIGH = "nofile-high"
    NOFILE_LOW = "nofile-low"


def baseline() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return BASELINE_NOFILE if hard == resource.RLIM_INFINITY else min(BASELINE_NOFILE, hard)


def baseline_wrapper() -> list[str]:
    n = baseline()
    return ["prlimit", f"--nofile={n}:{n}", "--"]


@functools.lru_cache(maxsize=1)
def _raisable(n: int) -> bool:
    """True when a child may set RLIMIT_NOFILE to n (needs CAP_SYS_RESOURCE above the hard limit)."""
    try:
        return subprocess.run(["prlimit", f"--nofile={n}:{n}", "--", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def nofile(limit: Limit | str) -> int:
    limit = Limit(limit)
    if limit == Limit.NOFILE_LOW:
        return NOFILE_LOW
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    try:
        with open("/proc/sys/fs/nr_open") as fh:
            nr_open = int(fh.read().strip())
    except (OSError, ValueError):
        nr_open = None
    if nr_open and _raisable(nr_open):
        return nr_open
    return hard if hard != resource.RLIM_INFINITY else (nr_open or 1 << 20)


def wrapper(limit: Limit | str) -> list[str]:
    n = nofile(limit)
    return ["prlimit", f"--nofile={n}:{n}", "--"]
