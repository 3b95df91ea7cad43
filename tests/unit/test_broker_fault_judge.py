"""The broker-fault checker on recorded observations (tests/fixtures/broker_fault: real runs of
Celery 5.6.2 against the lab's own Redis), and on variations of them that reproduce each
finding. Times are seconds after the broker answered again."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lab.faults.broker import MODES, BrokerFault, Moment, parse_mode, retry_budget_s
from lab.scenarios.broker_fault_judge import PROBE_BOUND_S, data_survived, inflight_ledger, judge
from lab.verdict import Verdict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "broker_fault"


def recorded(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture
def idle():
    return recorded("restart-idle-prefork-redis-pass")


@pytest.fixture
def running():
    return recorded("drop-running-threads-redis-pass")


def _no_probe_consumed(obs: dict) -> dict:
    obs = copy.deepcopy(obs)
    for key in obs["probe_keys"]:
        obs["executions"].pop(key, None)
    return obs


def test_recorded_restart_idle_is_pass_and_records_data_loss(idle):
    out = judge(idle)
    assert out.verdict is Verdict.PASS, out.summary
    assert out.metrics["probes_completed"] == "3/3"
    assert 0 < out.metrics["time_to_first_consume_s"] < PROBE_BOUND_S
    assert out.metrics["broker_data_survived"] is False  # Redis without persistence comes back empty
    assert out.metrics["broker_connection_max_retries"] == 100
    assert out.findings == []


def test_recorded_drop_while_running_accounts_for_the_task(running):
    out = judge(running)
    assert out.verdict is Verdict.PASS, out.summary
    assert out.metrics["inflight_completed_once"] == 1 and out.metrics["inflight_lost"] == 0
    assert out.metrics["broker_data_survived"] is True
    assert "1 completed once" in out.summary


def test_catatonic_worker_alive_and_connected_is_a_bug_with_evidence(idle):
    obs = _no_probe_consumed(idle)
    obs["catatonia"] = {"tree": [{"pid": 1, "name": "celery"}], "sockets_to_broker": ["1 4000->6400"],
                        "inspect": {"ping": {"w@lab": {"ok": "pong"}}, "active": {"w@lab": []}},
                        "last_log_lines": "Connected to redis://"}
    out = judge(obs)
    assert out.verdict is Verdict.BUG and out.signature == "catatonic-after-broker-fault"
    assert "pong" in out.summary
    assert {"process_tree", "inspect", "sockets_to_broker", "last_log_lines"} <= set(out.findings[0].evidence)
    assert out.findings[0].signature == "catatonic-after-broker-fault"


def test_alive_without_broker_socket_is_a_hang(idle):
    obs = _no_probe_consumed(idle)
    obs["catatonia"] = {"tree": [], "sockets_to_broker": [], "inspect": {"ping": None}}
    out = judge(obs)
    assert out.verdict is Verdict.HANG and out.signature == "no-reconnect-after-broker-fault"


def test_silent_exit_after_ready(idle):
    obs = _no_probe_consumed(idle)
    obs.update(worker_alive=False, exit={"exit_code": 0, "exit_signal": None, "exit_desc": "exit 0 after 3.0s",
                                         "after_back_s": 3.0})
    obs["log_after_fault"]["error_lines"] = []
    out = judge(obs)
    assert out.verdict is Verdict.SILENT_EXIT and out.signature == "exit-after-ready-silent"


def test_loud_exit_after_ready_is_a_bug_but_giving_up_after_outage_long_fails_fast(idle):
    obs = _no_probe_consumed(idle)
    obs.update(worker_alive=False, exit={"exit_code": 1, "exit_signal": None, "exit_desc": "exit 1 after 20s",
                                         "after_back_s": -1.0})
    obs["log_after_fault"]["error_lines"] = ["[x: CRITICAL/MainProcess] Unrecoverable error: OperationalError"]
    assert judge(obs).verdict is Verdict.BUG and judge(obs).signature == "exit-after-ready-loud"
    obs["plan"] = parse_mode("outage-long").to_dict()
    out = judge(obs)
    assert out.verdict is Verdict.FAILED_FAST and out.signature == "gave-up-after-retry-budget"


def test_inflight_lost_and_duplicated(running):
    lost = copy.deepcopy(running)
    lost["executions"]["inflight-0"]["ends"] = []
    out = judge(lost)  # the worker lives and Redis kept its data: only "not completed in the window"
    assert out.verdict is Verdict.INCOMPLETE and out.signature == "inflight-incomplete"
    lost["marker_after"] = {"count": 0}  # the broker came back without its data: gone
    out = judge(lost)
    assert out.verdict is Verdict.LOST and out.signature == "inflight-lost"
    dup = copy.deepcopy(running)
    dup["executions"]["inflight-0"].update(starts=[-1.0, 3.0], ends=[4.0, 8.0])
    out = judge(dup)
    assert out.verdict is Verdict.DUPLICATE and out.signature == "inflight-duplicate"
    assert inflight_ledger(dup)["redelivered"] == ["inflight-0"]


def test_chord_callback_lost_with_probes_fine_is_lost(running):
    obs = copy.deepcopy(running)
    obs["plan"] = parse_mode("restart@chord").to_dict()
    obs["inflight_keys"] = ["member-0", "member-1", "member-2"]
    for i, ends in ((0, [-0.5]), (1, [-0.4]), (2, [3.0])):
        obs["executions"][f"member-{i}"] = {"starts": [-1.0], "ends": ends, "redelivered": False}
    obs["callbacks"] = []
    out = judge(obs)  # the backend's data survived: not observed gone
    assert out.verdict is Verdict.INCOMPLETE and out.signature == "chord-callback-incomplete"
    obs["callbacks"] = [3.1]
    assert judge(obs).verdict is Verdict.PASS


def test_partial_probes_are_lost_and_publish_failure_is_a_lab_error(idle):
    obs = copy.deepcopy(idle)
    obs["executions"]["probe-2"]["ends"] = []
    obs["catatonia"] = {"sockets_to_broker": ["x"]}
    assert judge(obs).signature == "probes-incomplete" and judge(obs).verdict is Verdict.INCOMPLETE
    obs = copy.deepcopy(idle)
    obs["probe_publish"].update(sent=1, errors=["probe-1: OperationalError"])
    out = judge(obs)
    assert out.verdict is Verdict.ERROR and out.signature == "probe-publish-failed"


def test_worker_never_ready_is_judged_like_start_up():
    out = judge({"ready": False, "exit_code": 0, "loud_lines": [], "log_tail": ""})
    assert out.verdict is Verdict.SILENT_EXIT


def test_modes_and_plans_are_coherent():
    assert len(MODES) == len(BrokerFault) * len(Moment) and "drop-connections@running" in MODES
    for mode in MODES:
        assert parse_mode(mode).mode == mode
    short, long_ = parse_mode("outage-short"), parse_mode("outage-long")
    budget = retry_budget_s(short.settings["broker_connection_max_retries"])
    assert short.down_s < budget < long_.down_s
    assert long_.production["stands_for_max_retries"] == 100 and long_.production["stands_for_retry_budget_s"] > 2000
    with pytest.raises(ValueError, match="allowed"):
        parse_mode("restart@lunch")


def test_data_survival_unknown_without_marker():
    assert data_survived({"marker_before": {"error": "x"}}) is None
    assert data_survived({"marker_before": {"count_before": 1}, "marker_after": {"count": 1}}) is True


def test_recorded_chord_with_backend_on_the_restarted_redis_loses_its_callback():
    out = judge(recorded("restart-chord-prefork-redis-same-server-lost"))
    assert out.verdict is Verdict.LOST and out.signature == "chord-callback-lost"
    assert "came back without its data" in out.summary
    assert out.metrics["inflight_completed_once"] == 3 and out.metrics["probes_completed"] == "3/3"


def test_recorded_outage_long_worker_gives_up_and_exits_loudly():
    obs = recorded("outage-long-idle-prefork-redis-gave-up")
    out = judge(obs)
    assert out.verdict is Verdict.FAILED_FAST and out.signature == "gave-up-after-retry-budget"
    assert "before the broker's return" in out.summary
    assert out.metrics["broker_connection_max_retries"] == 3
    assert out.metrics["scaled"]["stands_for_max_retries"] == 100
    assert out.metrics["down_s"] > out.metrics["scaled"]["retry_budget_s"]


def test_matrices_name_broker_fault_modes_coherently():
    from lab.matrix import load_matrix
    full = load_matrix("full")
    assert set(full.scenario_options["broker-fault"][0]["modes"]) == set(MODES)
    default = [c for c in load_matrix("default").cells() if c.scenario == "broker-fault"]
    assert {c.celery for c in default} >= {"5.5.3", "5.6.2", "5.6.3", "5.7.0"}
    assert {c.pool for c in default} == {"prefork", "gevent", "eventlet", "threads", "solo"}
    assert {c.broker for c in default} == {"redis", "amqp"}
    assert {"restart", "drop-connections@running"} <= {c.mode for c in default}


def test_recorded_catatonic_worker_after_a_flapping_redis():
    """Celery 5.3.6 with kombu 5.3.7 (before kombu#2007), three Redis restarts 4 s apart:
    alive, one socket open to Redis, no probe consumed, no inspect reply (celery#8030)."""
    obs = recorded("flap-idle-prefork-redis-celery536-kombu537-catatonic")
    out = judge(obs)
    assert out.verdict is Verdict.BUG and out.signature == "catatonic-after-broker-fault"
    assert obs["catatonia"]["sockets_to_broker"] and obs["catatonia"]["tree"]
    assert out.metrics["probes_completed"] == "0/3" and out.metrics["worker_alive"] is True
    assert "last_log_lines" in out.findings[0].evidence and "inspect" in out.findings[0].evidence
    assert "last_log_lines:catatonic-after-broker-fault" in out.evidence  # Outcome.of folds it in


def test_a_known_crash_in_the_log_heads_missing_probes():
    """Recorded: 5.6.3, gevent, RabbitMQ restarted while idle; one probe's greenlet died of
    gevent's ConcurrentObjectUseError (reference run 20261202-022732, 1 of 3 attempts)."""
    outcome = judge(recorded("restart-idle-gevent-amqp-celery563-concurrent-socket"))
    assert outcome.verdict == Verdict.BUG and outcome.signature == "gevent-concurrent-socket-use"
    assert {f.signature for f in outcome.findings} >= {"gevent-concurrent-socket-use", "probes-incomplete"}
    assert "ConcurrentObjectUseError" in outcome.evidence["traceback:gevent-concurrent-socket-use"]
