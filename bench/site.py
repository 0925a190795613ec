"""A throw-away Django site for benchmarks: its own temp var dir (SQLite + media), never the developer's var/.

Everything that needs Django runs in a subprocess with this site's environment, because settings are read from
the environment once, at import: a process is one configuration (embedded or Elasticsearch, EfficientNet or VGG16).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import PROJECT_DIR, log


@dataclass
class Site:
    root: Path
    base_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, label: str = "site") -> Site:
        root = Path(tempfile.mkdtemp(prefix=f"visualsearch-bench-{label}-"))
        site = cls(root)
        site.migrate()
        return site

    @property
    def var_dir(self) -> Path:
        return self.root / "var"

    @property
    def media_root(self) -> Path:
        return self.root / "var" / "media"

    def env(self, **extra: str) -> dict[str, str]:
        """The process environment: this site's var dir, production-like DEBUG off, no throttling, quiet TF.

        ELASTICSEARCH_URL / DATABASE_URL from the caller's shell are dropped: the benchmark chooses the backend."""
        env = {k: v for k, v in os.environ.items() if k not in ("ELASTICSEARCH_URL", "DATABASE_URL")}
        env.update({
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DJANGO_VAR_DIR": str(self.var_dir),
            "DJANGO_MEDIA_ROOT": str(self.media_root),
            "DJANGO_DEBUG": "0",  # DEBUG keeps every SQL query in memory; production runs without it
            "DJANGO_SECRET_KEY": "bench-only-not-secret",
            "VISUALSEARCH_THROTTLE_RATE": "100000/min",
            # The global-path benchmarks (bulk indexing, e2e search, seed baseline) measure the CNN path alone;
            # bench.recognition turns the local-feature stage on for its own site.
            "VISUALSEARCH_RECOGNITION": "off",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
        })  # fmt: skip
        env.update(self.base_env)
        env.update(extra)
        return env

    def manage(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
        return run_command([sys.executable, "manage.py", *args], self.env(**extra_env))

    def migrate(self) -> None:
        self.manage("migrate", "--noinput", "-v", "0")

    def job(self, name: str, *args: str, **extra_env: str) -> dict[str, Any]:
        """Run ``bench.jobs <name>`` in this site's environment; its JSON result plus the process wall time."""
        out = self.root / f"job-{name}-{uuid.uuid4().hex[:6]}.json"
        started = time.perf_counter()
        run_command([sys.executable, "-m", "bench.jobs", name, "--out", str(out), *args], self.env(**extra_env))
        result = json.loads(out.read_text())
        result["process_wall_s"] = time.perf_counter() - started
        return result

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def run_command(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        log(f"command failed ({done.returncode}): {' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
        raise RuntimeError(f"{' '.join(command[:4])} exited with {done.returncode}")
    return done
