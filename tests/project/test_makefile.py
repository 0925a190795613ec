"""The README's commands: only the development ones write the development `.env` (DEBUG on)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.fresh_process import BASE_DIR

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
WRITES_ENV = re.compile(r">\s*\.env\b")


def planned_commands(target: str) -> str:
    """Every command `make TARGET` would run from scratch (-B: as if nothing were built; -n: run nothing)."""
    # Under `make test` the outer make's flags and variables would leak in through the environment.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    result = subprocess.run(["make", "-n", "-B", target], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                            check=True)  # fmt: skip
    return result.stdout


@pytest.mark.parametrize("target", ["setup", "setup-production", "test", "serve"])
def test_setup_and_test_do_not_write_the_development_env(target):
    assert not WRITES_ENV.search(planned_commands(target))


@pytest.mark.parametrize("target", ["run", "demo"])
def test_the_development_commands_write_it(target):
    commands = planned_commands(target)
    assert WRITES_ENV.search(commands) and "DJANGO_DEBUG=1" in commands


def test_serve_migrates_collects_static_files_and_runs_gunicorn_with_the_project_config():
    commands = planned_commands("serve").splitlines()
    steps = [next(i for i, c in enumerate(commands) if word in c) for word in ("migrate", "collectstatic", "gunicorn")]
    assert steps == sorted(steps)
    assert re.search(r"-m gunicorn -c gunicorn\.conf\.py --bind \S+$", commands[steps[-1]])  # $(HOST)
