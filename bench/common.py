"""Shared helpers for the benchmarks: timing, percentiles, machine facts, tables, JSON results, a quiet machine.

Benchmarks are not tests: they print a table, write JSON to ``bench/results/`` (git-ignored) and compare numbers as
ratios measured in the same run, because absolute numbers move with whatever else the machine is doing.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_ES_URL = "http://127.0.0.1:9200"
PACKAGES = ("Django", "djangorestframework", "numpy", "Pillow", "tensorflow-cpu", "keras", "elasticsearch")


# --- timing --------------------------------------------------------------------------------------------------------


@contextmanager
def timed(into: dict[str, float], name: str) -> Iterator[None]:
    """Add the seconds spent in the block to ``into[name]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        into[name] = into.get(name, 0.0) + time.perf_counter() - started


def time_calls(function: Callable[[], Any], repeat: int) -> list[float]:
    """Seconds taken by each of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return samples


@dataclass
class PhaseTimer:
    """Seconds and calls per phase, collected by wrapping functions (instrumentation without editing them)."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def wrap(self, phase: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            self.calls[phase] = self.calls.get(phase, 0) + 1
            with timed(self.seconds, phase):
                return function(*args, **kwargs)

        return wrapper


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def latency_summary_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / mean / min / max in milliseconds of samples given in seconds."""
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "mean": float(np.mean(ms)) if ms else float("nan"),
        "min": min(ms, default=float("nan")),
        "max": max(ms, default=float("nan")),
    }


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# --- the machine ---------------------------------------------------------------------------------------------------


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_for_quiet(max_load: float = 1.5, poll_s: float = 30, timeout_s: float = 600) -> dict[str, Any]:
    """Wait (up to ``timeout_s``) until the 1-minute load average is at most ``max_load``; report what happened."""
    started = time.monotonic()
    before = load_average()
    while os.getloadavg()[0] > max_load and time.monotonic() - started < timeout_s:
        print(f"bench: load average {load_average()} > {max_load}; waiting {poll_s:.0f} s", flush=True)
        time.sleep(poll_s)
    after = load_average()
    return {"before": before, "after": after, "waited_s": round(time.monotonic() - started, 1),
            "quiet": after[0] <= max_load, "max_load": max_load}  # fmt: skip


def machine_info(es_url: str | None = None) -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "elasticsearch_server": elasticsearch_version(es_url) if es_url else None,
        "git": _git_revision(),
        "load_average": load_average(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True,
                             text=True, check=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def elasticsearch_url() -> str:
    return os.environ.get("ELASTICSEARCH_URL", "").split(",")[0].strip() or DEFAULT_ES_URL


def elasticsearch_version(url: str) -> str | None:
    """The server's version, or None when nothing answers (the caller then skips its Elasticsearch part)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/_cat/nodes?h=version", timeout=5) as response:
            return response.read().decode().strip().splitlines()[0]
    except (OSError, IndexError):
        return None


# --- output --------------------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.{digits}f}"
    return "-" if value is None else str(value)


def times(value: float) -> str:
    """A ratio for a table cell: ``0.27×``."""
    return "-" if value != value else f"{value:.2f}×"


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text (and Markdown-compatible) table; cells are formatted with :func:`fmt` unless already strings."""
    cells = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(str(v).ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    parts = [f"\n{title}", line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    parts += [line(r) for r in cells]
    return "\n".join(parts)


def print_tables(tables: Sequence[str]) -> None:
    for text in tables:
        print(text, flush=True)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """``bench/results/<name>.json`` (the latest) plus a timestamped copy in ``bench/results/history/``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(payload, indent=2, default=_json_default)
    (RESULTS_DIR / "history").mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "history" / f"{name}-{stamp}.json").write_text(text)
    latest = RESULTS_DIR / f"{name}.json"
    latest.write_text(text)
    return latest


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def quiet_tensorflow() -> None:
    """Silence TensorFlow's start-up chatter (must run before it is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def multipart(files: dict, fields: dict) -> tuple[bytes, str]:
    """A multipart/form-data body: ``files`` maps a field to (filename, bytes, content type or "")."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, content_type) in files.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        parts.append(head.encode() + b"\r\n" + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
