"""Run project code in a fresh interpreter: settings are read once per process, from its environment."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
# Variables the tests choose themselves; anything the developer or CI exported must not leak in.
_OWN_PREFIXES = ("DJANGO_", "VISUALSEARCH_", "CELERY_", "TF_NUM_", "GUNICORN_")


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` on top of the current environment without our own variables, reading no `.env` file."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    return {**base, "DJANGO_ENV_FILE": "", "TF_CPP_MIN_LOG_LEVEL": "3", **env}


def run_python(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in the project directory with ``env`` on top of a clean environment and no `.env` file."""
    return subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=clean_env(env), capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def load_settings(env: dict[str, str], *names: str) -> dict:
    """The values of ``names`` in ``project.settings`` imported with ``env``; fails with its stderr otherwise."""
    code = (
        "import json, project.settings as s\n"
        f"print(json.dumps({{n: getattr(s, n, None) for n in {list(names)!r}}}, default=str))"
    )
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])
