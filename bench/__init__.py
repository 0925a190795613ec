"""Benchmarks (not tests): see bench/README.md. Run all with `python -m bench` or `bash bench/run_all.sh`."""
from __future__ import annotations
