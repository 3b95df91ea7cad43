"""Known failure signatures, and naming of unknown ones, over worker logs.

Contract: `classify(log_text)` returns every Match found, known signatures
first, in log order. A traceback that no known signature explains becomes a
new signature keyed by exception type and innermost celery/kombu/billiard
frame ("unknown:AttributeError@asynpool.py:_untrack_child_process") — never
dropped. A signature carries its upstream issue and fixed-in release when
known; the lab never uses `fixed_in` to decide a verdict, only to show it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Signature:
    name: str
    title: str
    pattern: str
    issue_url: str = ""
    fixed_in: str = ""
    severity: str = "bug"
    exc_type: str = ""   # the exception it is; an Unrecoverable error of another type is not folded in
    related: tuple[str, ...] = ()   # other signature names (or name prefixes) of the same defect
    fix_url: str = ""    # a merged upstream fix, when one is known (its release may not be)
    note: str = ""       # what the fix covers, where known


KNOWN = [
    Signature("sentinel-poll-attributeerror",
              "AttributeError: 'ForkProcess' object has no attribute '_sentinel_poll' during shutdown",
              r"AttributeError: 'ForkProcess' object has no attribute '_sentinel_poll'",
              "https://github.com/celery/celery/issues/10084",
              fixed_in="5.6.3", exc_type="AttributeError",
              related=("unrecoverable:TypeError@asynpool.py:_track_child_process",),
              fix_url="https://github.com/celery/celery/pull/10086",
              note=("5.6.3 (PR #10086, on the v5.6.x branch) guards the attribute in _untrack_child_process; "
                    "5.6.3 was not in the reference run. On 5.7.0 the same race fails in _track_child_process "
                    "instead (the related TypeError).")),
    Signature("verify-process-alive-assertion",
              "AssertionError in verify_process_alive (fd reuse while children are replaced)",
              r"verify_process_alive[\s\S]{0,400}?AssertionError|assert proc\.outqR_fd in hub\.readers",
              "", exc_type="AssertionError"),
    Signature("timed-out-waiting-for-up",
              "Timed out waiting for UP message from a new pool child",
              r"Timed out waiting for UP message"),
    Signature("shm-read-only",
              "prefork cannot create semaphores: /dev/shm is read-only",
              r"OSError\(30, 'Read-only file system'\)|\[Errno 30\] Read-only file system", exc_type="OSError"),
    Signature("gevent-concurrent-socket-use",
              "gevent: two greenlets used one broker socket (ConcurrentObjectUseError); the one that lost died",
              r"ConcurrentObjectUseError: This socket is already used by another greenlet",
              "https://github.com/celery/kombu/issues/2463", exc_type="ConcurrentObjectUseError",
              note=("Seen by the lab after a RabbitMQ restart under the gevent pool: a task greenlet's "
                    "early ack runs Consumer._restore_prefetch_count_after_connection_restart "
                    "(celery/worker/consumer/consumer.py), whose basic_qos reads the socket the consumer "
                    "greenlet is already reading; that task's greenlet dies and the task never runs. "
                    "kombu#2463 / PR #2478 cover the same error at connection close only; the same "
                    "traceback is in pytest-celery PR #400's log (2024).")),
    Signature("worker-lost-error",
              "WorkerLostError: a pool child exited prematurely",
              r"WorkerLostError\(|billiard\.exceptions\.WorkerLostError", severity="evidence",
              exc_type="WorkerLostError"),
]

UNRECOVERABLE = re.compile(r"Unrecoverable error: (\w+)\(")
TRACEBACK_START = re.compile(r"^Traceback \(most recent call last\):", re.M)
FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Shutdown|Terminate|Lost)\w*)(?::|$)", re.M)
OURS = ("celery/", "kombu/", "billiard/", "amqp/", "vine/")


@dataclass
class Match:
    name: str
    title: str
    excerpt: str
    known: bool
    issue_url: str = ""
    fixed_in: str = ""
    severity: str = "bug"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "excerpt": self.excerpt, "known": self.known,
                "issue_url": self.issue_url, "fixed_in": self.fixed_in, "severity": self.severity}


def _excerpt(text: str, start: int, end: int, context: int = 6) -> str:
    lines_before = text[:start].splitlines()[-context:]
    body = text[start:end]
    after = text[end:].splitlines()[:2]
    return "\n".join(lines_before + [body] + after).strip()


def tracebacks(text: str) -> list[tuple[int, int, str]]:
    """(start, end, block) of each Python traceback in the text."""
    blocks = []
    starts = [m.start() for m in TRACEBACK_START.finditer(text)]
    for index, start in enumerate(starts):
        limit = starts[index + 1] if index + 1 < len(starts) else len(text)
        lines, end = [], start
        for line in text[start:limit].splitlines(keepends=True):
            lines.append(line)
            end += len(line)
            stripped = line.rstrip("\n")
            if lines and len(lines) > 1 and not stripped.startswith((" ", "\t", "Traceback")):
                break
        blocks.append((start, end, "".join(lines)))
    return blocks


def traceback_key(block: str) -> tuple[str, str]:
    """(exception type, innermost celery/kombu/billiard frame) of a traceback."""
    frames = FRAME.findall(block)
    ours = [f for f in frames if any(o in f[0] for o in OURS)] or frames
    frame = ""
    if ours:
        path, _, func = ours[-1]
        frame = f"{path.rsplit('/', 1)[-1]}:{func}"
    last = block.strip().splitlines()[-1] if block.strip() else ""
    exc_type = last.split(":", 1)[0].strip().rsplit(".", 1)[-1] or "Unknown"
    return exc_type, frame


CHAINED = ("During handling of the above exception, another exception occurred:",
           "The above exception was the direct cause of the following exception:")


def context_spans(text: str) -> list[tuple[int, int]]:
    """Tracebacks that are only the context of a later one in the same chain
    ("During handling of the above exception..."): a match there is not the failure."""
    spans, blocks = [], tracebacks(text)
    for (start, end, _), (nxt, _, _) in zip(blocks, blocks[1:]):
        if text[end:nxt].strip() in CHAINED:
            spans.append((start, end))
    return spans


def classify(text: str) -> list[Match]:
    matches: list[Match] = []
    explained: list[tuple[int, int, str]] = []
    contexts = context_spans(text)
    for sig in KNOWN:
        found = next((m for m in re.finditer(sig.pattern, text)
                      if not any(s <= m.start() < e for s, e in contexts)), None)
        if found:
            matches.append(Match(sig.name, sig.title, _excerpt(text, found.start(), found.end()),
                                 True, sig.issue_url, sig.fixed_in, sig.severity))
            explained.append((found.start(), found.end(), sig.exc_type))
    for found in UNRECOVERABLE.finditer(text):
        if any(s - 2000 <= found.start() <= e + 2000 and kind in ("", found.group(1))
               for s, e, kind in explained):
            continue
        after = [b for b in tracebacks(text) if b[0] >= found.start()]
        while len(after) > 1 and text[after[0][1]:after[1][0]].strip() in CHAINED:
            after = after[1:]  # the chain's final exception is the failure
        blocks = after[:1]
        frame = traceback_key(blocks[0][2])[1] if blocks else ""
        name = f"unrecoverable:{found.group(1)}" + (f"@{frame}" if frame else "")
        matches.append(Match(name, f"Unrecoverable error: {found.group(1)}",
                             _excerpt(text, found.start(), blocks[0][1] if blocks else found.end()), False))
        explained.append((found.start(), blocks[0][1] if blocks else found.end(), found.group(1)))
    for start, end, block in tracebacks(text):
        if any(s <= start <= e or start <= s <= end for s, e, _ in explained) or \
                any(s == start for s, _ in contexts):
            continue
        exc_type, frame = traceback_key(block)
        name = f"unknown:{exc_type}" + (f"@{frame}" if frame else "")
        if not any(m.name == name for m in matches):
            matches.append(Match(name, f"{exc_type} traceback", _excerpt(text, start, end, 2), False))
    return matches


def loud_lines(text: str) -> list[str]:
    """Log lines at WARNING or above (Celery's `[date: LEVEL/Process]` format)."""
    return [line for line in text.splitlines()
            if re.search(r"(WARNING|ERROR|CRITICAL)/", line) or line.startswith(("Error", "Traceback"))]


# --- Metadata of every signature name a scenario may write (the report's one registry) ---------
# Known log signatures above carry their own title/issue. Scenario-judged signatures (behaviour,
# not a log pattern) and the generated families ("unrecoverable:<Type>@<frame>", "silent-exit:<class>")
# are described here. `issue_url`/`fixed_in` are only filled where an upstream record was found;
# an empty value means "not known", never "not fixed".
BEHAVIOUR: dict[str, dict[str, str | tuple[str, ...]]] = {
    "visibility-timeout-stall": {
        "title": ("An acks_late message left in Redis's unacked set by a killed worker comes back only "
                  "when the visibility timeout expires (broker_transport_options visibility_timeout; "
                  "Redis transport default 3600 s, scaled to 20 s in the lab)"),
        "issue_url": "https://github.com/celery/celery/issues/4984",
        "note": "#4984: a killed acks_late worker's task comes back only after the visibility timeout (1 h)",
        "related": ("unacked-task-parked",)},
    "unacked-task-parked": {
        "title": "A never-acknowledged task left in Redis's unacked hash by the exited worker "
                 "(redelivered only after the visibility timeout)",
        "issue_url": "https://github.com/celery/celery/issues/4984",
        "related": ("visibility-timeout-stall",)},
    "chord-unlock-polls-forever": {
        "title": "celery.chord_unlock retries forever (max_retries=None) when a chord member never completes",
        "issue_url": "https://github.com/celery/celery/issues/9674",
        "note": ("#9674 reports the same endless chord_unlock retry (max_retries=None) for a failed task in "
                 "nested chains; here a member message is gone"),
        "related": ("chord-join-counter-open",)},
    "chord-join-counter-open": {
        "title": "A chord's join counter stays below its size and nothing polls: the body never runs "
                 "(backends with native join, e.g. Redis)",
        "related": ("chord-unlock-polls-forever",)},
    "unrecoverable:TypeError@asynpool.py:_track_child_process": {
        "title": ("Unrecoverable TypeError ('NoneType' object cannot be interpreted as an integer) in "
                  "asynpool _track_child_process during cold shutdown: on 5.7.0 the same race as the "
                  "_sentinel_poll AttributeError fails one line earlier"),
        "related": ("sentinel-poll-attributeerror",)},
    "chord-error-twice": {"title": "The chord body's errback runs more than once for one member failure"},
    "chord-duplicate": {"title": "A chord body ran more than once, or with wrong input"},
    "member-pending": {"title": "A chord member stays pending: the body never runs"},
    "started-after-signal": {"title": "A worker started tasks after it received a shutdown signal",
                             "note": ("on the threads pool this is celery#10180 (a warm shutdown ran the "
                                      "prefetched tasks), fixed by #10183 (executor.shutdown(cancel_futures=True) "
                                      "in celery/concurrency/thread.py), first released in 5.7.0; gevent and "
                                      "eventlet still show it on 5.7.0")},
    "unrecoverable:NotImplementedError@base.py:terminate_job": {
        "title": ("Unrecoverable NotImplementedError: the pool does not implement kill_job, so a cold shutdown "
                  "(or revoke with terminate) cannot end the running task (threads, solo)"),
        "issue_url": "https://github.com/celery/celery/issues/10490",
        "note": "open upstream; PR #10491 proposes terminate_job for the threads pool"},
    "unacked-task-failed": {"title": "A never-acknowledged (prefetched or acks_late) task was marked failed "
                                     "by the shutdown instead of being requeued"},
    "unacked-task-lost": {"title": "A never-acknowledged task was neither redelivered nor left in the broker"},
    "duplicate-execution": {"title": "A task completed more than once across a shutdown"},
    "drain-not-run": {"title": "No drain worker ran after the shutdown (what was requeued is unknown)"},
    "shutdown-hang": {"title": "The worker did not exit within its bound after the shutdown signal(s)"},
    "warm-cut-running-task": {"title": "A warm shutdown did not let running tasks finish"},
    "warm-slow-exit": {"title": "A warm shutdown took longer than the running tasks needed"},
    "warm-plan-cold-line": {"title": "A warm shutdown printed a cold-shutdown line"},
    "cold-waited-for-running-tasks": {"title": "A cold shutdown waited for running tasks to finish"},
    "cold-slow-exit": {"title": "A cold shutdown took longer than 'at once' (timing)"},
    "soft-slow-exit": {"title": "A soft shutdown took longer than its timeout plus a cold exit (timing)"},
    "soft-cut-running-task": {"title": "A soft shutdown cut a running task that had less time left than the timeout"},
    "soft-waited-past-timeout": {"title": "A soft shutdown let a task with more time left than the timeout run to the end"},
    "orphaned-children": {"title": "Processes of the worker outlived its master"},
    "drain-not-ready": {"title": "The drain worker never became ready: what was requeued is unknown"},
    "running-task-lost": {"title": "A running task was lost by the shutdown (early ack: not redelivered)"},
    # eviction
    "member-lost": {"title": "The in-flight chord member never completed and is gone from the broker"},
    "member-not-completed": {"title": "The in-flight chord member never completed within the window (still queued)"},
    "visibility-timeout-parked": {
        "title": ("The in-flight acks_late message is still parked in Redis's unacked set at the end of the "
                  "window: it returns only after the visibility timeout (a prediction until measure-stall "
                  "waits it out)"),
        "issue_url": "https://github.com/celery/celery/issues/4984"},
    "children-outlived-master": {"title": "Pool children kept running after the master was SIGKILLed alone",
                                 "issue_url": "https://github.com/celery/celery/issues/102"},
    # broker-fault (issue 10)
    "catatonic-after-broker-fault": {
        "title": "After the broker came back the worker is alive and connected but consumes nothing",
        "issue_url": "https://github.com/celery/celery/issues/8030"},
    "no-reconnect-after-broker-fault": {"title": "After the broker came back the worker never reconnected"},
    "exit-after-ready-silent": {"title": "The worker exited after ready without saying why (exit 0, nothing at ERROR)"},
    "exit-after-ready-loud": {"title": "The worker exited after ready with an error"},
    "gave-up-after-retry-budget": {"title": "The worker exited once its broker_connection_max_retries were spent"},
    "probes-incomplete": {"title": "Fresh tasks published after the broker's return did not all complete in the bound"},
    "inflight-incomplete": {"title": "The task in flight at the broker fault did not complete within the window"},
    "inflight-lost": {"title": "The task in flight at the broker fault never completed and is gone"},
    "inflight-duplicate": {"title": "The task in flight at the broker fault completed more than once"},
    "chord-callback-incomplete": {"title": "The chord in flight at the broker fault did not complete within the window"},
    "chord-callback-lost": {"title": "The chord in flight at the broker fault lost its callback (its state was on the faulted server)"},
    "chord-callback-duplicate": {"title": "The chord in flight at the broker fault ran its callback more than once"},
    "probe-publish-failed": {"title": "The lab could not publish its probe tasks (a lab failure)"},
    # remote control, recycling, publishing through shutdown (issue 11)
    "control-shutdown-not-warm": {"title": "control.shutdown() did not behave as the warm shutdown it documents"},
    "control-call-failed": {"title": "A remote-control call failed"},
    "revoke-terminate-refused": {"title": "revoke(terminate=True) is refused by this pool (NotImplementedError)"},
    "revoke-terminate-ignored": {"title": "revoke(terminate=True) left the running task running"},
    "revoke-unanswered-in-warm-shutdown": {
        "title": "A revoke sent during a warm shutdown got no reply and the revoked task ran later",
        "issue_url": "https://github.com/celery/celery/issues/8417"},
    "revoked-task-ran": {"title": "A revoked task ran anyway"},
    "revoke-not-journaled": {"title": "A revoke was acknowledged but the worker never recorded it"},
    "pool-control-refused": {"title": "pool_grow/pool_shrink was refused by this pool"},
    "pool-size-unchanged": {"title": "pool_grow/pool_shrink replied ok but the pool size did not change"},
    "fresh-work-not-run": {"title": "Fresh work published after the fault never ran"},
    "replacement-child-idle": {"title": "A replacement pool child came up and never took work"},
    "task-failed-in-recycle": {"title": "A task failed while its child was recycled (e.g. WorkerLostError)"},
    "task-ran-twice": {"title": "A task ran twice while children were recycled"},
    "message-ran-twice": {"title": "A message published through the shutdown window ran twice"},
    "exited-before-signal": {"title": "The worker exited before the lab's signal arrived"},
}

FAMILIES: list[tuple[str, str]] = [   # (name prefix, title template; {rest} is the name after the prefix)
    ("unrecoverable:", "Unrecoverable error (the worker crashed): {rest}"),
    ("swallowed:", "An exception raised inside the pool and swallowed (logged, the worker went on): {rest}"),
    ("unknown:", "A traceback no known signature explains: {rest}"),
    ("failed-loudly:", "The worker refused to start and said why: {rest}"),
    ("silent-exit:", "The worker exited before ready without saying why (class {rest}; see lab diagnose)"),
    ("start-hang:", "The worker neither became ready nor exited within the start bound ({rest})"),
    ("warm-exit-code:", "A warm shutdown exited with status {rest}, not 0"),
    ("master-killed:", "The worker's master process died of {rest}"),
]


def describe(name: str | None) -> dict:
    """Metadata for a signature name: {"name", "title", "issue_url", "fix_url", "fixed_in", "note",
    "related", "pattern", "known"}; every name gets a title (a family's, or the name itself)."""
    if not name:
        return {}
    out = {"name": name, "title": "", "issue_url": "", "fix_url": "", "fixed_in": "", "related": (),
           "pattern": "", "known": False, "note": ""}
    known = next((s for s in KNOWN if s.name == name), None)
    if known:
        out.update(title=known.title, issue_url=known.issue_url, fix_url=known.fix_url, fixed_in=known.fixed_in,
                   related=known.related, pattern=known.pattern, known=True, note=known.note)
    elif name in BEHAVIOUR:
        out.update(BEHAVIOUR[name], known=True)
    else:
        for prefix, template in FAMILIES:
            if name.startswith(prefix):
                rest = name[len(prefix):]
                inner = describe(rest) if rest and (rest in BEHAVIOUR or any(s.name == rest for s in KNOWN)) else {}
                out.update(title=template.format(rest=inner.get("title") or rest),
                           issue_url=inner.get("issue_url", ""), fixed_in=inner.get("fixed_in", ""))
                break
    out["title"] = out["title"] or name
    out["related"] = tuple(out["related"]) + tuple(
        s.name for s in KNOWN if name in s.related and s.name not in out["related"])
    return out
