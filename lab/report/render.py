"""Render the report model into static HTML pages with Jinja2.

Contract: `environment()` is a Jinja2 Environment with autoescape ON for every
template (names end in .html.j2, so extension-based selection would miss
them), StrictUndefined, and the filters the templates use. `write_pages(report,
out_dir, diff, signature_info)` writes index.html, one scenario-<name>.html per
scenario, cells/<slug>.html per record, signatures.html and, when a diff is
given, diff.html; it returns the index path. Pages are self-contained (inline
CSS and SVG, a little inline JS for filtering, no network) and link to one
another and to the run's log files by relative paths, so the report opens
from file://. Nothing is marked safe except markup built by
`lab.report.signatures.highlight`, which escapes its input itself.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from lab import __version__
from lab.verdict import Verdict

from lab.report import answer as ans
from lab.report import signatures as sig
from lab.report.bundle import rate_commands, write_bundle
from lab.report.diff import Diff
from lab.report.model import Entry, Report, slugify, version_key
from lab.report.outputs import fmt_duration
from lab.report.portable import link_if_exists, portable_command, portable_value
from lab.report.slices import signature_slices
from lab.report.style import VERDICT_ORDER, VERDICT_STYLE, css_rules, is_lab_failure, style
from lab.report.timeline import layout

TEMPLATES = Path(__file__).parent / "templates"
EMPTY_VERSIONS = ("", None)


def fmt_time(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)) or not epoch:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))


def fmt_value(value: Any) -> str:
    """Render a metric or config value as short text (nested values as JSON)."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=1, sort_keys=True, default=str)
    return str(value)


def safe_url(value: Any) -> str:
    """Only links to an upstream tracker (sig.UPSTREAM) leave the report; anything else renders as no link."""
    text = str(value or "")
    return text if text.startswith(sig.UPSTREAM) else ""


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(time=fmt_time, duration=fmt_duration, value=fmt_value,
                       pct=lambda x: f"{float(x or 0):.1%}", slug=slugify, url=safe_url,
                       portable=portable_command, pvalue=lambda v: fmt_value(portable_value(v)))
    env.globals.update(VERDICT_ORDER=VERDICT_ORDER, VERDICT_STYLE=VERDICT_STYLE, Verdict=Verdict,
                       verdict_css=Markup(css_rules()),  # constant CSS, no user text
                       lab_version=__version__, style=style, is_lab_failure=is_lab_failure)
    return env


def _evidence(entry: Entry, info: dict[str, Any]) -> list[tuple[str, Any]]:
    outcome = entry.record.outcome
    literals = [str(outcome.evidence.get("match") or "")]
    if outcome.signature:
        literals.append(outcome.signature)
    blocks = []
    for name, text in outcome.evidence.items():
        if not isinstance(text, str):
            text = json.dumps(text, indent=2, sort_keys=True, default=str)
        blocks.append((str(name), sig.highlight(text, literals, info.get("pattern"))))
    return blocks


def _rates(rates: Any) -> list[dict[str, Any]]:
    """metrics["rates"] with every field the template reads (tolerates partial rows)."""
    defaults = {"verdict": "", "signature": None, "k": 0, "n": 0, "low": 0.0, "high": 1.0, "first_attempt": ""}
    return [dict(defaults, **r) for r in rates if isinstance(r, dict)] if isinstance(rates, list) else []


def _cell_context(entry: Entry, out_dir: Path, report: Report, extra: dict[str, Any],
                  versions: list[str]) -> dict[str, Any]:
    record = entry.record
    info = sig.info(record.outcome.signature, extra)
    metrics = {k: v for k, v in record.outcome.metrics.items() if k not in ("rates", "attempt_records")}
    logs = [(name, link_if_exists(entry.run.run_dir / path, out_dir / "cells"), portable_command(path))
            for name, path in sorted(record.logs.items())]
    siblings = [e for e in report.entries if e.record.cell_id == record.cell_id and e is not entry]
    attempts = _attempts(record)
    bundle = link_if_exists(out_dir / "repro" / entry.slug / "README.md", out_dir / "cells")
    return dict(entry=entry, record=record, outcome=record.outcome, info=info, metrics=metrics,
                rates=_rates(record.outcome.metrics.get("rates")), evidence=_evidence(entry, info),
                logs=logs, timeline=layout(record.journal, record.faults, record.outcome.metrics), siblings=siblings,
                attempts=attempts, bundle=bundle, rate_cmds=rate_commands(entry, versions),
                settings=ans.settings_of(entry.axis("profile")), words=ans.words(entry),
                scaled=ans.scaled([entry]), findings=entry.findings,
                signature_infos={n: sig.info(n, extra) for n in entry.signatures})


def _attempts(record) -> list[tuple[str, Any]]:
    """Per-attempt timelines when the record carries them (metrics["attempt_records"]), else []."""
    items = record.outcome.metrics.get("attempt_records")
    out = []
    for index, item in enumerate(items if isinstance(items, list) else [], 1):
        if isinstance(item, dict) and (item.get("journal") or item.get("faults")):
            label = f"attempt {item.get('attempt', index)}: {item.get('verdict', '?')}" + (
                f" {item['signature']}" if item.get("signature") else "")
            out.append((label, layout(item.get("journal") or [], item.get("faults") or [], record.outcome.metrics)))
    return out


def write_pages(report: Report, out_dir: Path, diff: Diff | None = None,
                signature_info: dict[str, dict[str, Any]] | None = None,
                answer_versions: list[str] | None = None) -> Path:
    """Write every page (see the module contract) and the repro bundles; return index.html."""
    env = environment()
    out_dir = Path(out_dir)
    (out_dir / "cells").mkdir(parents=True, exist_ok=True)
    extra = signature_info or {}
    versions = sorted({e.axis("celery") for e in report.entries}, key=version_key)
    shown = ans.answer_versions(report, answer_versions)
    production = ans.production_version(report)
    changes = diff.by_cell if diff is not None else {}
    common = dict(report=report, has_diff=diff is not None, diff=diff, changes=changes, generated=time.time(),
                  answer_shown=shown, production=production)
    for entry in report.entries:
        if entry.verdict.value not in ("n/a",) and not is_lab_failure(entry.verdict):
            write_bundle(entry, out_dir / "repro", versions)

    def write(name: str, template: str, root: str = "", **context: Any) -> Path:
        html = env.get_template(template).render(root=root, **common, **context)
        path = out_dir / name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, path)
        return path

    infos = {s.name: sig.info(s.name, extra) for s in report.signatures}
    index = write("index.html", "index.html.j2", use=ans.what_to_use(report, production) if production else [],
                  top=ans.top_findings(report), answers={t.name: bool(ans.answer_tables(t, shown))
                                                        for t in report.scenarios})
    for table in report.scenarios:
        write(table.page, "scenario.html.j2", table=table, answers=ans.answer_tables(table, shown),
              settings_of=ans.settings_of, caveat_of=ans.caveat_of,
              signatures=[s for s in report.signatures if table.name in s.scenarios], infos=infos)
    for entry in report.entries:
        write(entry.page, "cell.html.j2", root="../", **_cell_context(entry, out_dir, report, extra, versions))
    (out_dir / "signatures").mkdir(exist_ok=True)
    for seen in report.signatures:
        write(f"signatures/{slugify(seen.name)}.html", "signature.html.j2", root="../", seen=seen,
              info=infos[seen.name], slices=signature_slices(seen.name, report.entries),
              known_names={s.name for s in report.signatures})
    write("signatures.html", "signatures.html.j2", infos=infos,
          known=sorted(set(sig.SIGNATURES) | set(extra)))
    if diff is not None:
        pages = {e.record.cell_id: e.page for e in report.entries}
        write("diff.html", "diff.html.j2", pages=pages)
    return index
