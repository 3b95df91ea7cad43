"""The broker-fault checker: a pure function of recorded observations (no Celery).

Contract: `judge(obs)` turns what lab.scenarios.broker_fault observed into an
Outcome whose `findings` hold every lab.verdict.Finding observed; the
headline follows lab.verdict's HEADLINE_ORDER (Outcome.of). Times are
seconds after the broker answered again ("back"). Findings:
  exit-after-ready-silent    SILENT_EXIT  exited 0 after ready with nothing at ERROR+
  exit-after-ready-loud      BUG          any other exit after ready (a known signature's
                                          name, marked crash, when the log has one)
  gave-up-after-retry-budget FAILED_FAST  outage-long only: it exited, saying so at ERROR+,
                                          once the (scaled) retry budget was spent
  catatonic-after-broker-fault BUG        alive, sockets open to the broker, none of PROBES
                                          probes consumed within PROBE_BOUND_S (evidence:
                                          process tree, sockets, inspect ping/active, log)
  no-reconnect-after-broker-fault HANG    alive, no socket to the broker, nothing consumed
  probes-incomplete          INCOMPLETE   some probes started or completed, not all, in the bound
  inflight-lost / -incomplete LOST / INCOMPLETE  in-flight work never completed: lost when
                                          its worker exited or the broker came back empty
  chord-callback-lost / -incomplete  the same for the chord's callback (lost when its
                                          result backend was the faulted server, emptied)
  inflight-duplicate, chord-callback-duplicate  DUPLICATE  completed more than once
  probe-publish-failed       ERROR        the lab could not publish its probe (the lab failed)
Pass: every probe completed within the bound, every in-flight unit exactly
once, the callback once. The in-flight ledger (completed once, redelivered,
lost, duplicated), the time to first consume, whether the broker's data
survived, the worker's retry settings and every scaled value with what it
stands for go in metrics/evidence whatever the verdict.
"""

from __future__ import annotations

from typing import Any

from lab.scenarios.observe import judge_start_failure
from lab.verdict import Finding, Outcome, Verdict

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
    findings: list[Finding] = []

    def add(verdict: Verdict, signature: str, summary: str, evidence: dict | None = None,
            crash: bool = False) -> None:
        findings.append(Finding(verdict, signature, summary, evidence or {}, crash))

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
                + (f": {errors[-1][:200]}" if errors else ""),
                {"traceback": bugs[0]["excerpt"]} if bugs else {}, crash=bool(bugs))
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
                    f"'Connection to broker lost', {seen} 'Connected to'",
                    {"process_tree": repr(cat.get("tree")), "sockets_to_broker": repr(sockets),
                     "inspect": repr(cat.get("inspect")), "last_log_lines": cat.get("last_log_lines", "")})
            else:
                add(Verdict.HANG, "no-reconnect-after-broker-fault",
                    f"alive, no socket to the broker, consumed none of {len(probes)} probes within "
                    f"{PROBE_BOUND_S:g}s ({log.get('cannot_connect', 0)} 'Cannot connect' lines)")
        else:
            add(Verdict.INCOMPLETE, "probes-incomplete", f"{len(done)} of {len(probes)} probes completed "
                f"within {PROBE_BOUND_S:g}s (started: {_fmt(started)})")
        # a known defect in the log after the fault explains the missing work (e.g. gevent's
        # ConcurrentObjectUseError killing a task's greenlet): a crash finding of its own, headlined
        for match in [m for m in log.get("signatures") or [] if m.get("severity") == "bug" and m.get("known")][:1]:
            add(Verdict.BUG, match["name"], f"{match['title']}, in the log after the fault; "
                f"{len(done)} of {len(probes)} probes completed", {"traceback": match["excerpt"]}, crash=True)
    led = inflight_ledger(obs)
    survived = data_survived(obs)
    if led["lost"]:
        # gone for good when the worker that ran it exited or the broker came back without its data;
        # otherwise only "not completed within the window"
        gone = bool(exit_) or survived is False
        add(Verdict.LOST if gone else Verdict.INCOMPLETE, "inflight-lost" if gone else "inflight-incomplete",
            f"work in flight at the fault never completed: {_fmt(led['lost'])}"
            + (" (redelivered, still not completed)" if set(led["lost"]) & set(led["redelivered"]) else "")
            + (" and the worker exited" if exit_ else " and the broker came back without its data"
               if survived is False else f" within {obs.get('observed_until', 0):.0f}s of the broker's return"))
    if led["duplicated"]:
        add(Verdict.DUPLICATE, "inflight-duplicate",
            f"work in flight at the fault completed more than once: {_fmt(led['duplicated'])}")
    callbacks = obs.get("callbacks") or []
    if moment == "chord":
        if not callbacks:
            gone = obs.get("placement") == "same-server" and survived is False
            why = (" (the chord's state was in the result backend on the faulted server, which came back "
                   "without its data)" if gone else "")
            add(Verdict.LOST if gone else Verdict.INCOMPLETE,
                "chord-callback-lost" if gone else "chord-callback-incomplete",
                f"the chord's callback never ran within {obs.get('observed_until', 0):.0f}s of the broker's "
                f"return{why}")
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
        "broker_server": "; ".join(((obs.get("server") or {}).get("server") or {}).get("notes") or []),
        "retry_settings": repr(retry), "inflight_ledger": "; ".join(f"{k}: {_fmt(v)}" for k, v in led.items()),
        "broker_data": ("survived" if survived else "did not survive" if survived is False else "unknown")
                       + f": marker {obs.get('marker_before')} -> {obs.get('marker_after')}",
        "log_after_fault": "\n".join((log.get("lost_lines") or []) + (log.get("connected_lines") or [])
                                     + (log.get("error_lines") or [])),
        "log_tail": obs.get("log_tail", ""),
    }
    if not findings:
        metrics["key_figure"] = f"pass, consumed {first_consume:.1f}s after return" if first_consume is not None \
            else "pass"
        inflight = (f"; in flight: {len(led['completed_once'])} completed once"
                    + (f" ({len(led['redelivered'])} redelivered)" if led["redelivered"] else "")
                    if obs.get("inflight_keys") else "")
        passed = (f"{fault} at {moment}: {len(done)}/{len(probes)} probes completed within {PROBE_BOUND_S:g}s, "
                  f"first consume {first_consume:.1f}s after the broker's return{inflight}"
                  + ("; callback once" if moment == "chord" else ""))
        return Outcome.of([], metrics, evidence, passed=passed)
    outcome = Outcome.of(findings, metrics, evidence)
    outcome.metrics["key_figure"] = outcome.signature
    outcome.metrics["findings"] = [f.signature for f in findings]
    outcome.summary = f"{fault} at {moment}: {outcome.summary}"[:900]
    return outcome


def _short(value: Any) -> str:
    return "no reply" if not value else repr(value)[:120]
