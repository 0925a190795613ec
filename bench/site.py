"""A throw-away Django site for benchmarks: its own temp var dir (SQLite + media), never the developer's var/.

Everything that needs Django runs in a subprocess with this site's environment, because settings are read from
the environment once, at import: a process is one configuration (embedded or Elasticsearch, EfficientNet or VGG16).
The site's web server is the production one (gunicorn with gunicorn.conf.py, one worker) unless
``BENCH_SERVER=runserver`` asks for `manage.py runserver --noreload`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import PROJECT_DIR, log

SERVERS = {
    "gunicorn": "gunicorn -c gunicorn.conf.py --workers 1 (gthread, GUNICORN_THREADS threads, default 4), DEBUG off",
    "runserver": "manage.py runserver --noreload, DEBUG off",
}


def server_kind() -> str:
    kind = os.environ.get("BENCH_SERVER", "gunicorn")
    if kind not in SERVERS:
        raise SystemExit(f"BENCH_SERVER must be one of {sorted(SERVERS)}, not {kind!r}")
    return kind


@dataclass
class Server:
    """A running web server of a site: its base URL, its process and the process that serves requests."""

    base: str
    process: subprocess.Popen
    serving_pid: int  # gunicorn: the worker; runserver --noreload: the process itself

    def memory_mb(self) -> dict[str, float | None]:
        """Resident and peak resident memory of the serving process, MB (from /proc; None where unavailable), and
        gunicorn's master's resident memory."""
        memory = memory_mb(self.serving_pid)
        if self.serving_pid != self.process.pid:
            memory["master_rss_mb"] = memory_mb(self.process.pid)["rss_mb"]
        return memory


@dataclass
class Site:
    root: Path
    base_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, label: str = "site") -> Site:
        root = Path(tempfile.mkdtemp(prefix=f"visualsearch-bench-{label}-"))
        site = cls(root)
        site.migrate()
        site.manage("collectstatic", "--noinput", "-v", "0")  # as `make serve`: pages need the static manifest
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

    @contextmanager
    def serve(self, env: dict[str, str], label: str) -> Iterator[Server]:
        """This site's web server (see :data:`SERVERS`, ``BENCH_SERVER``) on a free loopback port, ready to answer;
        stopped (by its own pid) afterwards."""
        kind, port = server_kind(), _free_port()
        command = {
            "gunicorn": ["-m", "gunicorn", "-c", "gunicorn.conf.py", "--workers", "1", "--bind", f"127.0.0.1:{port}"],
            "runserver": ["manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        }[kind]  # fmt: skip
        log_path = self.root / f"{kind}-{label}.log"
        with log_path.open("w") as log_file:
            process = subprocess.Popen([sys.executable, *command], cwd=PROJECT_DIR, env=self.env(**env),
                                       stdout=log_file, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base, process, log_path)
            yield Server(base, process, _serving_pid(kind, process, log_path))
        finally:
            process.terminate()  # gunicorn: graceful stop of the master and its worker
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def run_command(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        log(f"command failed ({done.returncode}): {' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
        raise RuntimeError(f"{' '.join(command[:4])} exited with {done.returncode}")
    return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(base: str, server: subprocess.Popen, log_path: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{base}/api/products/", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the server is not ready after {timeout_s:.0f} s; see {log_path}")


def _serving_pid(kind: str, process: subprocess.Popen, log_path: Path) -> int:
    if kind == "runserver":
        return process.pid
    booted = re.findall(r"Booting worker with pid: (\d+)", log_path.read_text())
    if len(booted) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {booted}; see {log_path}")
    return int(booted[0])


def memory_mb(pid: int) -> dict[str, float | None]:
    """Resident and peak resident memory (VmRSS, VmHWM) of a process, MB (None where unavailable)."""
    values: dict[str, float | None] = {"rss_mb": None, "peak_rss_mb": None}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                values["rss_mb"] = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                values["peak_rss_mb"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return values
