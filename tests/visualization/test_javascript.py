"""The viewer's own JavaScript (sparse_lens/visualization/static/*.js, vendor/ excluded) parses, and is
ESLint-clean where ESLint is installed (`make lint-js` installs it under tests/visualization/eslint)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sparse_lens.visualization.viewer import SCRIPTS, STATIC

ROOT = Path(__file__).resolve().parents[2]
ESLINT_DIR = Path(__file__).resolve().parent / "eslint"
ESLINT = ESLINT_DIR / "node_modules" / ".bin" / "eslint"


def test_every_script_is_loaded_by_the_viewer():
    assert sorted(p.name for p in STATIC.glob("*.js")) == sorted(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_parses(name):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    done = subprocess.run([node, "--check", str(STATIC / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_scripts_are_eslint_clean():
    if not ESLINT.exists():
        pytest.skip("ESLint is not installed here (make lint-js installs it with npm)")
    done = subprocess.run([str(ESLINT), "-c", str(ESLINT_DIR / "eslint.config.mjs"), *(str(STATIC / n) for n in SCRIPTS)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
