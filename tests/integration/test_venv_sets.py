"""Real uv venvs per exact dependency set (issue 12, failing input 2: a pin leaks into later runs)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from lab import venvs
from lab.deps import DepSet

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(venvs.uv_command() is None, reason="uv is not installed")]


def installed(venv, dist: str) -> str:
    return subprocess.run([venv.python, "-c", f"from importlib import metadata; print(metadata.version({dist!r}))"],
                          capture_output=True, text=True, timeout=60, check=True).stdout.strip()


def test_a_pinned_run_never_leaks_into_a_later_unpinned_one(tmp_path):
    pinned = venvs.ensure_venv(DepSet.make("5.6.2", requested={"billiard": "4.2.4"}), tmp_path)
    plain = venvs.ensure_venv(DepSet.make("5.6.2"), tmp_path)
    assert installed(pinned, "billiard") == "4.2.4"
    assert installed(plain, "billiard") != "4.2.4"          # whatever 5.6.2 resolves to, not the pin
    again = venvs.ensure_venv(DepSet.make("5.6.2"), tmp_path)
    assert not again.created and installed(again, "billiard") == installed(plain, "billiard")
    print(f"venv creation: pinned {pinned.seconds}s, plain {plain.seconds}s, reuse {again.seconds}s")


def test_an_unresolvable_set_raises_setup_failed_naming_the_conflict(tmp_path):
    with pytest.raises(venvs.SetupFailed, match=r"billiard"):
        venvs.ensure_venv(DepSet.make("5.6.2", requested={"billiard": "4.2.0"}), tmp_path)
    assert not (tmp_path / "set-5.6.2-billiard4.2.0").exists()   # no half-built venv is left to reuse
