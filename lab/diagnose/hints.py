"""What usually causes an evidence pattern: the hint texts `lab diagnose` prints (data).

Contract: PATTERN_HINTS is (key, regex over the worker's output, text);
CLASS_HINTS maps each start class's finer class (lab.diagnose.classify
StartClass.sub) to what usually causes it; HINT_ALIASES maps a finer class
to the hint it shares. `hint_keys(text)` lists the PATTERN_HINTS keys whose
pattern occurs in `text`. Hints are heuristics over the evidence, never an
input to a class or verdict. Standard library only.
"""

from __future__ import annotations

import re

PATTERN_HINTS = [
    ("shm", r"Read-only file system|/dev/shm|SemLock|sem_open|_multiprocessing\.SemLock",
     "prefork needs POSIX semaphores in a writable /dev/shm; the container mounts it read-only or "
     "not at all (mount an emptyDir with medium: Memory on /dev/shm, or use a pool without children)."),
    ("fork", r"Resource temporarily unavailable|can't start new thread|BlockingIOError: \[Errno 11\]|"
             r"\[Errno 11\]|EAGAIN",
     "fork()/clone() refused: a process or thread limit (RLIMIT_NPROC for a non-root user, the pids "
     "cgroup / pids.max of the container) is below what the pool needs."),
    ("memory", r"MemoryError|Cannot allocate memory|\[Errno 12\]|failed to map segment|mmap",
     "an address-space / memory limit (ulimit -v, RLIMIT_AS, a memory cgroup) is too low for the "
     "interpreter, the pool or its thread stacks."),
    ("retry-off", r"connection to the message broker after a connection loss has\s+been disabled|"
                  r"broker_connection_retry_on_startup=False",
     "the broker refused the connection and broker_connection_retry_on_startup is False: the worker "
     "shuts down on the first failed attempt."),
    ("refused", r"Cannot connect to \S+|Connection refused|Error 111|\[Errno 111\]",
     "the broker is not reachable at that address (not started yet, wrong host/port, DNS, network "
     "policy)."),
    ("broken-pipe", r"BrokenPipeError|\[Errno 32\]",
     "the reader of the worker's stdout/stderr went away (a log shipper, `| head`, a closed "
     "terminal); the next write fails."),
    ("bad-fd", r"Bad file descriptor|\[Errno 9\]|NoneType' object has no attribute 'write'",
     "stdout or stderr is closed (`>&-`, a supervisor that closes them); Celery writes the banner "
     "and shutdown lines to sys.__stdout__ and logs to sys.__stderr__."),
    ("keyboard", r"KeyboardInterrupt|^Aborted!$",
     "SIGINT arrived before Celery installed its handler (before the banner): Python raised "
     "KeyboardInterrupt."),
    ("permission", r"Permission denied|\[Errno 13\]",
     "the worker's user cannot read or write something it needs (app code, the log or pid file, "
     "the working directory)."),
]


def hint_keys(text: str) -> list[str]:
    return [key for key, pattern, _ in PATTERN_HINTS if re.search(pattern, text, re.M)]


CLASS_HINTS = {
    "exit0-shutdown-line": (
        "A shutdown signal (SIGTERM, SIGINT or SIGQUIT) reached the worker after Celery installed its "
        "handlers (right after the banner) but before the consumer was ready. Celery treats it as an "
        "ordinary shutdown: WorkController.start() catches the SystemExit, Blueprint.stop() finds the "
        "blueprint not fully started and 'can safely exit' (celery/bootsteps.py), and the process "
        "ends with only a 'worker: Warm/Cold shutdown' line on stdout and status 0 (SIGINT: 1). "
        "With gevent/eventlet the worker may even print 'ready.' first and stop ~2 s later. Usual senders: "
        "the orchestrator replacing or stopping the pod (rolling update, a failing startup/liveness "
        "probe, scale-down), `timeout`, a supervisor, a shell forwarding Ctrl-C."),
    "exit0-after-banner": (
        "Status 0 after the banner with no shutdown line: app code raised SystemExit(0) / called "
        "sys.exit() during start-up (a bootstep, a signal handler, a module imported late) — "
        "WorkController.start() turns SystemExit into a quiet stop with that code; or the process "
        "you watched is not the worker: a wrapper backgrounded it (`celery worker &`) or it "
        "--detach'ed, and the parent exited (as PID 1 of a container this kills the worker)."),
    "exit0-before-banner": (
        "Status 0 before Celery printed anything: the command you watched did not run the worker in "
        "the foreground (a shell that backgrounds it or exits early, --detach, an entrypoint that "
        "ends), or app code exited while importing."),
    "exit0-after-ready": (
        "The worker reported ready and then ended with status 0 within the confirmation window: a "
        "shutdown signal or SystemExit arrived as the consumer started (it was already queued "
        "when the event loop checked for shutdown)."),
    "exit0-errors-logged": (
        "The output explains a failure but the exit status is 0: the status you see is not the "
        "worker's. A pipeline (`celery worker | tee log`) reports its last command's status unless "
        "`set -o pipefail`; a shell wrapper that does not `exec` the worker may exit 0 on its own."),
    "exit0-worker-left-running": (
        "The command exited 0 but worker processes are still running: the worker was backgrounded or "
        "--detach'ed. A supervisor that waits for its main process (Docker, Kubernetes, systemd "
        "Type=simple) considers it finished — as PID 1 of a container, the kernel then kills the rest."),
    "killed": (
        "Killed by a signal with nothing logged. SIGTERM/SIGHUP/SIGQUIT before Celery installed "
        "its handlers (before the banner) take the default action and kill the process silently; "
        "SIGKILL comes from the OOM killer, a container runtime, or a PID namespace whose PID 1 "
        "exited."),
    "nonzero-silent": (
        "Non-zero exit with nothing at WARNING or above: the error went to a stream you do not see "
        "(stderr closed or sent to /dev/null), it happened before logging was configured, or "
        "SIGINT/KeyboardInterrupt stopped the start-up (Celery exits 1 without logging)."),
    "hang-retrying": (
        "Neither ready nor exited, and the log keeps saying why: usually the broker is unreachable "
        "and broker_connection_retry_on_startup is on, so the worker retries up to "
        "broker_connection_max_retries times."),
    "hang-silent-after-banner": (
        "Stuck after the banner without a word: typically the broker accepts the TCP connection but "
        "never answers (a wrong port or protocol, a proxy or load balancer, a half-open network "
        "path) and the transport has no socket timeout; or a bootstep / signal handler blocks."),
    "hang-no-output": (
        "No output at all and still running: the output is not reaching you (stdout/stderr closed or "
        "redirected, block buffering), or the app blocks while being imported (a database or "
        "network call at import time)."),
    "hang-silent": (
        "Some output, then nothing and still running: the start-up blocks before the banner (app "
        "import, a signal handler, a slow DNS lookup)."),
    "failed-loudly": (
        "The worker said why it stopped (see the lines at WARNING or above); fix that cause."),
    "ready": ("The worker reached ready and stayed up."),
    "ready-shutdown-ignored": (
        "A shutdown signal arrived while the worker was starting: Celery printed the shutdown line "
        "(its handler ran and set the flag) but the start-up carried on to ready and the worker kept "
        "running — the request was lost. The sender (an orchestrator's SIGTERM at a rolling update) "
        "will wait for its grace period and SIGKILL, losing early-acked tasks. Send the signal again "
        "after ready, or delay stop requests until the worker is ready."),
}


HINT_ALIASES = {"nonzero-shutdown-line": "exit0-shutdown-line"}
