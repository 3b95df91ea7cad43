"""How far a lab worker is from a plain `celery worker`: Celery's defaults and the deviations.

Contract: `deviations(spec)` lists, for a lab.worker.WorkerSpec, every way its
command and environment differ from `celery -A <app> worker` as a container
runtime would start it, as {"what", "why"} dicts for the record
(`environment.workers[].deviations`) and the cell page. QUIET_FLAGS are the
flags the lab passed to every worker before issue 11; each turns a Celery
default off (gossip, mingle and heartbeat are on: celery/bin/worker.py), and
a profile may ask for them (`worker_args`); OBSERVER_FLAGS are what a drain
worker (an observer, `WorkerSpec.observer`) drops. CELERY_DEFAULTS are Celery's own
values for the options the lab always passes (celery/bin/worker.py, 5.x).
Standard library only (lab.worker_output).
"""

from __future__ import annotations

from lab.worker_output import DEFAULT_STDIO

QUIET_FLAGS = ("--without-gossip", "--without-mingle", "--without-heartbeat")
# A drain worker (lab.observers.drain) is an observer started after the worker under test has exited
# and its survivors were killed: mingle's hello (celery/worker/consumer/mingle.py, `inspect(timeout=1.0)`)
# can find no neighbour, so it only delays consuming by 1 s (issue 15: ~80 drains in the default matrix).
OBSERVER_FLAGS = ("--without-mingle",)
OBSERVER_WHY = ("drain worker, an observer: the worker under test has exited and its survivors were "
                "killed, so mingle's 1 s hello would find no neighbour; the worker under test keeps it")
CELERY_DEFAULTS = {"-P": "prefork", "-c": "the number of CPUs", "-l": "WARNING",
                   "-n": "celery@<hostname>", "-Q": "the default queue (celery)"}



def deviations(spec) -> list[dict[str, str]]:
    """Every way this worker differs from a plain `celery -A <app> worker` started by a
    container runtime: {"what", "why"} per item, for the record and the cell page."""
    out = [{"what": f"-P {spec.pool} -c {spec.concurrency}",
            "why": f"the cell's pool and concurrency (Celery: -P {CELERY_DEFAULTS['-P']}, "
                   f"-c {CELERY_DEFAULTS['-c']})"},
           {"what": f"-l {spec.loglevel}", "why": "lifecycle lines (ready., shutdown) are at INFO; "
                                                  "Celery's default level is WARNING"},
           {"what": "-n <worker-id>@lab -Q <cell queue>", "why": "isolation: one queue and hostname per "
                                                                "attempt on a shared broker"},
           {"what": "env --default-signal", "why": "default signal dispositions, as a container "
                                                   "runtime starts a process"},
           {"what": "PYTHONUNBUFFERED=1", "why": "output reaches the log as it is written (common "
                                                 "in container images)"},
           {"what": "LAB_* environment, the lab's journal handlers on Celery signals",
            "why": "observation: every lifecycle signal and task execution is journaled"}]
    observer = [f for f in OBSERVER_FLAGS if f not in spec.profile_args] if spec.observer else []
    if observer:
        out.append({"what": " ".join(observer), "why": OBSERVER_WHY})
    if spec.profile_args:
        out.append({"what": " ".join(spec.profile_args), "why": "the profile's worker_args"})
    if spec.extra_args:
        out.append({"what": " ".join(spec.extra_args), "why": "the scenario's workload or condition"})
    if spec.wrapper:
        out.append({"what": "wrapper: " + " ".join(spec.wrapper)[:160],
                    "why": "the scenario's condition (limits, user, namespaces, shell)"})
    if spec.stdio != DEFAULT_STDIO:
        out.append({"what": f"stdio={spec.stdio}", "why": "the profile's stdio"})
    return out
