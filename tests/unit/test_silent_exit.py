"""silent-exit's checker and `lab diagnose`'s classifier on synthetic observations."""

from __future__ import annotations

from lab import catalog, diagnose
from lab.scenarios.silent_exit import SilentExit
from lab.scenarios.startup_conditions import DESCRIPTIONS, Condition, not_applicable, parse
from lab.verdict import Verdict

BANNER = """ -------------- worker-1@lab v5.6.2 (recovery)
--- ***** -----
- ** ---------- [config]
- ** ---------- .> transport:   redis://127.0.0.1:6379/0

[tasks]
  . lab.sleep
"""
READY = "[2026-01-01 10:00:00,000: INFO/MainProcess] worker-1@lab ready.\n"
ROOT_WARNING = ("/venv/celery/platforms.py:841: SecurityWarning: You're running the worker with superuser "
                "privileges: this is\nabsolutely not recommended!\n")
RETRY = ("[2026-01-01 10:00:01,000: ERROR/MainProcess] consumer: Cannot connect to redis://127.0.0.1:1/0: "
         "Error 111 connecting to 127.0.0.1:1. Connection refused..\nTrying again in 2.00 seconds... (1/100)\n")
NO_RETRY = ("[2026-01-01 10:00:01,000: CRITICAL/MainProcess] Retrying to establish a connection to the message "
            "broker after a connection loss has been disabled (app.conf.broker_connection_retry_on_startup"
            "=False). Shutting down...\n")


def observed(text: str, condition: str = "baseline", **facts) -> dict:
    obs = {"condition": condition, "condition_text": DESCRIPTIONS[condition], "ready": False,
           "ready_seen": False, "exit_code": None, "exit_signal": None, "elapsed_s": 2.0,
           "bound_s": 30.0, "leftovers": [], "hook": None, "notes": [], "inner_status": None}
    obs.update(diagnose.analyze_output(text))
    obs.update(facts)
    return obs


def judge(obs):
    return SilentExit().judge(obs)


def test_ready_is_pass():
    out = judge(observed(ROOT_WARNING + BANNER + READY, ready=True, ready_seen=True, ready_s=2.5))
    assert out.verdict == Verdict.PASS and out.signature is None
    assert "ready" in out.summary


def test_warm_shutdown_line_and_exit_0_before_ready_is_silent_exit():
    text = ROOT_WARNING + BANNER + "\nworker: Warm shutdown (MainProcess)\n"
    hook = {"moment": "consumer", "action": "SIGTERM", "via": "bootstep after Pool", "handler": "worker_Warm"}
    out = judge(observed(text, "sigterm-consumer", exit_code=0, hook=hook))
    assert out.verdict == Verdict.SILENT_EXIT
    assert out.signature == "silent-exit:exit0-shutdown-line"
    assert "Warm shutdown" in out.summary and "SIGTERM at consumer" in out.summary
    assert "handler then: worker_Warm" in out.evidence["hook"]


def test_killed_by_default_action_before_banner_is_silent_exit():
    out = judge(observed(ROOT_WARNING, "sigterm-init", exit_code=-15, exit_signal="SIGTERM",
                         hook={"moment": "init", "action": "SIGTERM", "handler": "SIG_DFL"}))
    assert out.verdict == Verdict.SILENT_EXIT and out.signature == "silent-exit:killed"
    assert "killed by SIGTERM" in out.summary


def test_nonzero_with_only_a_security_warning_is_silent():
    out = judge(observed(ROOT_WARNING, "stderr-closed", exit_code=1))
    assert out.verdict == Verdict.SILENT_EXIT and out.signature == "silent-exit:nonzero-silent"


def test_loud_failure_is_pass():
    out = judge(observed(ROOT_WARNING + BANNER + NO_RETRY, "broker-refused-noretry", exit_code=1))
    assert out.verdict == Verdict.PASS and out.signature.startswith("failed-loudly")
    assert "broker_connection_retry_on_startup" in out.evidence["causes"]


def test_exit_0_with_errors_logged_is_silent_exit_status_hidden():
    out = judge(observed(BANNER + NO_RETRY, "pid1-tee", exit_code=0, inner_status="1"))
    assert out.verdict == Verdict.SILENT_EXIT and out.signature == "silent-exit:exit0-errors-logged"
    assert "the worker itself exited 1" in out.summary


def test_exit_0_with_worker_left_running():
    out = judge(observed("", "pid1-background", exit_code=0,
                         leftovers=[{"pid": 5, "cmd": "python -m celery worker"}]))
    assert out.signature == "silent-exit:exit0-worker-left-running"
    assert "still running" in out.summary


def test_exit_0_after_banner_without_shutdown_line():
    out = judge(observed(BANNER, "systemexit0", exit_code=0,
                         hook={"moment": "consumer", "action": "exit0", "handler": None}))
    assert out.signature == "silent-exit:exit0-after-banner"


def test_hang_loud_and_silent():
    loud = judge(observed(BANNER + RETRY * 3, "broker-refused", last_output_age_s=1.0))
    assert loud.verdict == Verdict.HANG and loud.signature == "start-hang:hang-retrying"
    quiet = judge(observed(BANNER, "broker-silent", last_output_age_s=27.0))
    assert quiet.verdict == Verdict.HANG and quiet.signature == "start-hang:hang-silent-after-banner"
    nothing = judge(observed("", "stdout-closed"))
    assert nothing.signature == "start-hang:hang-no-output"


def test_hook_never_fired_but_ready_is_not_applicable():
    out = judge(observed(BANNER + READY, "sigterm-pool", ready=True, ready_seen=True, ready_s=2.0))
    assert out.verdict == Verdict.NA and out.signature == "hook-not-reached"


def test_analyze_output_reads_banner_ready_and_shutdown():
    facts = diagnose.analyze_output(ROOT_WARNING + BANNER + READY + "\nworker: Warm shutdown (MainProcess)\n")
    assert facts["banner_seen"] and facts["tasks_seen"]
    assert facts["ready_line"].endswith("ready.")
    assert facts["shutdown_lines"] == ["worker: Warm shutdown (MainProcess)"]
    assert facts["explaining_lines"] == []
    assert diagnose.READY_LINE.search("celery@host ready.")
    assert not diagnose.READY_LINE.search("[tasks]\n  . lab.ready_check\n")


def test_conditions_match_the_catalog_and_parse():
    assert tuple(DESCRIPTIONS) == catalog.SCENARIOS["silent-exit"].modes
    assert Condition("sigquit-connect").value == "sigquit-connect"
    assert parse("sighup-pool") == ("SIGHUP", "pool")
    assert parse("broker-silent") == (None, None)
    assert not_applicable("broker-silent", "sql") and not_applicable("broker-silent", "redis") is None


def test_describe_exit():
    assert diagnose.describe_exit(None, None) == "still running"
    assert diagnose.describe_exit(-15, "SIGTERM") == "killed by SIGTERM"
    assert diagnose.describe_exit(143, None) == "exit 143 (128+SIGTERM)"


def test_ready_although_a_shutdown_was_requested_is_flagged():
    text = BANNER + "\nworker: Warm shutdown (MainProcess)\n" + READY
    hook = {"moment": "connect", "action": "SIGINT", "via": "Consumer.connect", "handler": "worker_Warm"}
    out = judge(observed(text, "sigint-connect", ready=True, ready_seen=True, ready_s=2.0,
                         shutdown_ignored=True, hook=hook))
    assert out.verdict == Verdict.PASS and out.signature == "ready:ready-shutdown-ignored"
    assert "although a shutdown was requested" in out.summary


def test_stop_after_ready_that_fails_is_noted():
    out = judge(observed(BANNER + READY, "stdout-reader-exits", ready=True, ready_seen=True, ready_s=2.0,
                         stop_after_ready="still running after 15.0s"))
    assert out.verdict == Verdict.PASS and "still running after 15.0s" in out.summary


def test_sigint_after_handlers_exit_1_with_only_the_shutdown_line():
    text = BANNER + "\nworker: Hitting Ctrl+C again will initiate cold shutdown\n\nworker: Warm shutdown (MainProcess)\n"
    out = judge(observed(text, "sigint-consumer", exit_code=1,
                         hook={"moment": "consumer", "action": "SIGINT", "handler": "worker_Warm"}))
    assert out.verdict == Verdict.SILENT_EXIT and out.signature == "silent-exit:nonzero-shutdown-line"
    assert "bootsteps.py" in out.evidence["causes"]


def test_exit_after_the_ready_line_says_so():
    text = BANNER + "\nworker: Warm shutdown (MainProcess)\n" + READY
    out = judge(observed(text, "sigterm-connect", exit_code=0, ready_seen=True, ready_s=2.0, elapsed_s=4.1))
    assert out.signature == "silent-exit:exit0-shutdown-line"
    assert "2.1s after its ready line" in out.summary
