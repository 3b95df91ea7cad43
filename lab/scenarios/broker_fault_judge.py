"""The broker-fault checker: a pure function of recorded observations (no Celery).

Contract: `judge(obs)` turns what lab.scenarios.broker_fault observed into an
Outcome; every finding (verdict, signature, summary) is listed in
evidence["findings"] and the headline is the most severe
(lab.verdict.SEVERITY), the others in `also`. Times are seconds after the
broker answered again ("back"). Findings:
  exit-after-ready-silent   SILENT_EXIT  the worker exited 0 after ready with nothing at ERROR+
  exit-after-ready-loud     BUG          it exited otherwise (the log's bug signature if known)
  gave-up-after-retry-budget FAILED_FAST outage-long only: it exited, saying so at ERROR+,
                                         once the (scaled) retry budget was spent
  catatonic-after-broker-fault BUG       alive, with sockets to the broker, and it consumed
                                         none of the PROBES probes within PROBE_BOUND_S
  no-reconnect-after-broker-fault HANG   alive, no socket to the broker, consumed nothing
  probe-lost                LOST         some probes started or completed, not all, in the bound
  inflight-lost             LOST         work in flight at the fault never completed
  inflight-duplicate / chord-callback-duplicate  DUPLICATE  completed more than once
  chord-callback-lost       LOST         the chord's callback never ran
  probe-publish-failed      ERROR        the lab could not publish its probe (the lab failed)
Pass: every probe completed within the bound, every in-flight unit exactly
once, the callback once. The in-flight ledger (completed once, redelivered,
lost, duplicated), the time to first consume, whether the broker's data
survived, the worker's retry settings and every scaled value with what it
stands for go in metrics/evidence whatever the verdict.
"""

from __future__ import annotations

from typing import Any

from lab.scenarios.observe import judge_start_failure
from lab.verdict import SEVERITY, Outcome, Verdict

PROBES = 3
PROBE_DELAY_S = 2.0     # after the broker is back (issue 10: "two seconds after it is back")
PROBE_BOUND_S = 30.0    # the probes must complete within this after publishing


def _fmt(xs: list[str]) -> str:
    return ", ".join(sorted(xs)) or "-"


def inflight_ledger(obs: dict[str, Any]) -> dict[str, list[str]]:
    """Buckets of in-flight keys: completed-once, redelivered, lost, duplicated."""
    out: dict[str, list[str]] = {"completed_once": [], "redelivered": [], "lost": [], "duplicated": []}
    for key in obs.get("inflight_keys") or []:
        row = (obs.get("executions") or {}).get(key) or {"starts": [], "ends": []}
        ends, starts = len(row["ends"]), len(row["starts"])
        if starts > 1 or row.get("redelivered"):
            out["redelivered"].append(key)
        if ends == 0:
            out["lost"].append(key)
        elif ends == 1:
            out["completed_once"].append(key)
        else:
            out["duplicated"].append(key)
    return out


def data_survived(obs: dict[str, Any]) -> bool | None:
    before, after = obs.get("marker_before") or {}, obs.get("marker_after") or {}
    if before.get("error") or not (before.get("published") or before.get("count_before")):
        return None
    return bool(after.get("count"))


def judge(obs: dict[str, Any]) -> Outcome:
    if not obs.get("ready"):
        return judge_start_failure(obs)
    plan = obs["plan"]
    fault, moment = plan["fault"], plan["moment"]
    ex = obs.get("executions") or {}
    probes = obs.get("probe_keys") or []
    done = [k for k in probes if ex.get(k, {}).get("ends")]
    started = [k for k in probes if ex.get(k, {}).get("starts")]
    after_back = sorted(t for row in ex.values() for t in row.get("starts", []) if t >= 0)
    first_consume = after_back[0] if after_back else None
    log = obs.get("log_after_fault") or {}
    findings: list[dict[str, str]] = []

    def add(verdict: Verdict, signature: str, summary: str) -> None:
        findings.append({"verdict": verdict.value, "signature": signature, "summary": summary})

    publish = obs.get("probe_publish") or {}
    if publish.get("sent", 0) < PROBES:
        add(Verdict.ERROR, "probe-publish-failed", f"the lab published {publish.get('sent', 0)} of {PROBES} "
            f"probes after the broker's return: {'; '.join(publish.get('errors') or [])[:300]}")
    exit_ = obs.get("exit")
    if exit_:
        errors = log.get("error_lines") or []
        t = exit_["after_back_s"]
        when = (f"{t:.1f}s after the broker's return" if t >= 0 else
                f"{-t:.1f}s before the broker's return, {t - (obs.get('fault') or {}).get('fault_mono', 0):.1f}s "
                "after the fault")
        if exit_.get("exit_code") == 0 and not errors:
            add(Verdict.SILENT_EXIT, "exit-after-ready-silent",
                f"the worker exited after ready ({exit_['exit_desc']}, {when}) with nothing at ERROR or above")
        elif fault == "outage-long" and errors and not exit_.get("exit_signal"):
            add(Verdict.FAILED_FAST, "gave-up-after-retry-budget",
                f"the worker gave up once its retry budget was spent ({exit_['exit_desc']}, {when}): "
                f"{errors[-1][:200]}")
        else:
            # known signatures only: the connection-loss traceback Celery logs at WARNING is expected
            bugs = [m for m in log.get("signatures") or [] if m.get("severity") == "bug" and m.get("known")]
            add(Verdict.BUG, bugs[0]["name"] if bugs else "exit-after-ready-loud",
                f"the worker exited after ready ({exit_['exit_desc']}, {when})"
                + (f": {errors[-1][:200]}" if errors else ""))
    elif len(done) < len(probes):
        cat = obs.get("catatonia") or {}
        sockets = cat.get("sockets_to_broker") or []
        if not started:
            if sockets:
                lost = log.get("lost_count", len(log.get("lost_lines") or []))
                seen = log.get("connected_count", len(log.get("connected_lines") or []))
                add(Verdict.BUG, "catatonic-after-broker-fault",
                    f"alive and connected ({len(sockets)} socket(s) to the broker) but consumed none of "
                    f"{len(probes)} probes within {PROBE_BOUND_S:g}s; inspect ping: "
                    f"{_short((cat.get('inspect') or {}).get('ping'))}; its log after the fault: {lost} "
                    f"'Connection to broker lost', {seen} 'Connected to'")
            else:
                add(Verdict.HANG, "no-reconnect-after-broker-fault",
                    f"alive, no socket to the broker, consumed none of {len(probes)} probes within "
                    f"{PROBE_BOUND_S:g}s ({log.get('cannot_connect', 0)} 'Cannot connect' lines)")
        else:
            add(Verdict.LOST, "probe-lost", f"{len(done)} of {len(probes)} probes completed within "
                f"{PROBE_BOUND_S:g}s (started: {_fmt(started)})")
    led = inflight_ledger(obs)
    if led["lost"]:
        add(Verdict.LOST, "inflight-lost", f"work in flight at the fault never completed: {_fmt(led['lost'])}"
            + (" (redelivered, still not completed)" if set(led["lost"]) & set(led["redelivered"]) else ""))
    if led["duplicated"]:
        add(Verdict.DUPLICATE, "inflight-duplicate",
            f"work in flight at the fault completed more than once: {_fmt(led['duplicated'])}")
    callbacks = obs.get("callbacks") or []
    survived = data_survived(obs)
    if moment == "chord":
        if not callbacks:
            why = (" (the chord's state was in the result backend on the faulted server, which came back "
                   "without its data)" if obs.get("placement") == "same-server" and survived is False else "")
            add(Verdict.LOST, "chord-callback-lost", f"the chord's callback never ran within "
                f"{obs.get('observed_until', 0):.0f}s of the broker's return{why}")
        elif len(callbacks) > 1:
            add(Verdict.DUPLICATE, "chord-callback-duplicate", f"the chord's callback ran {len(callbacks)}x")
    retry = obs.get("retry_settings") or {}
    metrics: dict[str, Any] = {
        "fault": fault, "moment": moment, "down_s": (obs.get("fault") or {}).get("down_s"),
        "time_to_first_consume_s": first_consume,
        "probe_first_start_s": min((ex[k]["starts"][0] for k in started), default=None),
        "probes_completed": f"{len(done)}/{len(probes)}", "probe_bound_s": PROBE_BOUND_S,
        "probe_delay_s": PROBE_DELAY_S, "broker_data_survived": survived,
        "backend_placement": obs.get("placement"), "worker_alive": obs.get("worker_alive"),
        **{f"inflight_{k}": len(v) for k, v in led.items()},
        "callbacks": len(callbacks) if moment == "chord" else None,
        "broker_connection_retry": retry.get("broker_connection_retry"),
        "broker_connection_max_retries": retry.get("broker_connection_max_retries"),
        "broker_connection_timeout": retry.get("broker_connection_timeout"),
        "scaled": plan.get("production") or {},
    }
    evidence: dict[str, Any] = {
        "plan": plan.get("description", ""), "fault_detail": repr(obs.get("fault")),
        "backend": f"{obs.get('placement')}: {obs.get('backend_url', '')}"
                   + (f" ({obs['placement_reason']})" if obs.get("placement_reason") else ""),
        "retry_settings": repr(retry), "inflight_ledger": "; ".join(f"{k}: {_fmt(v)}" for k, v in led.items()),
        "broker_data": ("survived" if survived else "did not survive" if survived is False else "unknown")
                       + f": marker {obs.get('marker_before')} -> {obs.get('marker_after')}",
        "log_after_fault": "\n".join((log.get("lost_lines") or []) + (log.get("connected_lines") or [])
                                     + (log.get("error_lines") or [])),
        "log_tail": obs.get("log_tail", ""),
        "findings": findings,
    }
    if obs.get("catatonia"):
        cat = obs["catatonia"]
        evidence.update(process_tree=repr(cat.get("tree")), sockets_to_broker=repr(cat.get("sockets_to_broker")),
                        inspect=repr(cat.get("inspect")), last_log_lines=cat.get("last_log_lines", ""))
    if not findings:
        metrics["key_figure"] = f"pass, consumed {first_consume:.1f}s after return" if first_consume is not None \
            else "pass"
        inflight = (f"; in flight: {len(led['completed_once'])} completed once"
                    + (f" ({len(led['redelivered'])} redelivered)" if led["redelivered"] else "")
                    if obs.get("inflight_keys") else "")
        return Outcome(Verdict.PASS, f"{fault} at {moment}: {len(done)}/{len(probes)} probes completed within "
                       f"{PROBE_BOUND_S:g}s, first consume {first_consume:.1f}s after the broker's return"
                       f"{inflight}" + ("; callback once" if moment == "chord" else ""),
                       None, metrics, evidence)
    worst = min((Verdict(f["verdict"]) for f in findings), key=SEVERITY.index)
    head = next(f for f in findings if f["verdict"] == worst.value)
    metrics["key_figure"] = head["signature"]
    metrics["findings"] = [f["signature"] for f in findings]
    others = sorted({f["verdict"] for f in findings} - {worst.value})
    summary = f"{fault} at {moment}: " + "; ".join(f["summary"] for f in findings)
    return Outcome(worst, summary[:700], head["signature"], metrics, evidence, others)


def _short(value: Any) -> str:
    return "no reply" if not value else repr(value)[:120]
