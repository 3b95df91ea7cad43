"""Signature classification over real-looking worker logs."""

from __future__ import annotations

from lab.signatures import classify, loud_lines, traceback_key

SENTINEL = """[2026-01-01 10:00:00,000: INFO/MainProcess] Task lab.churn succeeded
worker: Warm shutdown (MainProcess)
Traceback (most recent call last):
  File "/v/lib/python3.11/site-packages/celery/worker/worker.py", line 203, in start
    self.blueprint.start(self)
  File "/v/lib/python3.11/site-packages/celery/concurrency/asynpool.py", line 1302, in _untrack_child_process
    proc._sentinel_poll
AttributeError: 'ForkProcess' object has no attribute '_sentinel_poll'
"""

UNKNOWN = """[2026-01-01 10:00:00,000: CRITICAL/MainProcess] Unrecoverable error: KeyError(5)
Traceback (most recent call last):
  File "/v/site-packages/celery/worker/worker.py", line 203, in start
    self.blueprint.start(self)
  File "/v/site-packages/kombu/asynchronous/hub.py", line 99, in remove
    del self.readers[fd]
KeyError: 5
"""


def test_known_signature_with_excerpt():
    found = classify(SENTINEL)
    assert found[0].name == "sentinel-poll-attributeerror" and found[0].known
    assert "_sentinel_poll" in found[0].excerpt
    assert len(found) == 1  # the same traceback is not also reported as unknown


def test_unrecoverable_unknown_is_keyed_by_type_and_frame():
    found = classify(UNKNOWN)
    assert [m.name for m in found] == ["unrecoverable:KeyError@hub.py:remove"]
    assert not found[0].known


def test_bare_unknown_traceback_is_never_dropped():
    text = 'Traceback (most recent call last):\n  File "/x/billiard/pool.py", line 1, in f\n    g()\nOSError: boom\n'
    assert [m.name for m in classify(text)] == ["unknown:OSError@pool.py:f"]
    assert traceback_key(text) == ("OSError", "pool.py:f")


def test_clean_log_has_no_signature_and_loud_lines():
    clean = "[2026-01-01 10:00:00,000: INFO/MainProcess] ready.\n"
    assert classify(clean) == [] and loud_lines(clean) == []
    assert loud_lines("[d: WARNING/MainProcess] hm") == ["[d: WARNING/MainProcess] hm"]


def test_read_only_shm_is_recognised():
    text = "[d: CRITICAL/MainProcess] Unrecoverable error: OSError(30, 'Read-only file system')\n"
    assert classify(text)[0].name == "shm-read-only"


CHAINED_TYPEERROR = """[2026-01-01 10:00:00,000: CRITICAL/MainProcess] Unrecoverable error: TypeError("'NoneType' object cannot be interpreted as an integer")
Traceback (most recent call last):
  File "/v/site-packages/celery/concurrency/asynpool.py", line 516, in _untrack_child_process
    proc._sentinel_poll
AttributeError: 'ForkProcess' object has no attribute '_sentinel_poll'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/v/site-packages/celery/worker/worker.py", line 203, in start
    self.blueprint.start(self)
  File "/v/site-packages/celery/concurrency/asynpool.py", line 509, in _track_child_process
    fd = os.dup(proc._sentinel_poll)
TypeError: 'NoneType' object cannot be interpreted as an integer
"""


def test_a_known_error_only_in_the_chained_context_is_not_the_failure():
    names = [m.name for m in classify(CHAINED_TYPEERROR)]
    assert names == ["unrecoverable:TypeError@asynpool.py:_track_child_process"]
