"""Web entry points: nothing heavy at import, so a pre-forking server (gunicorn --preload) forks a clean parent."""
from __future__ import annotations

import pytest

from tests.fresh_process import run_python

# Wait a moment: a warm-up thread started at import would show up, and so would TensorFlow once it imported.
PROBE = """
import sys, threading, time
import {module}
time.sleep(0.5)
print(sorted(t.name for t in threading.enumerate()), "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize("module", ["project.wsgi", "project.asgi"])
def test_importing_the_application_starts_no_warm_up(module):
    result = run_python(PROBE.format(module=module), {"DJANGO_SECRET_KEY": "x", "VISUALSEARCH_WARM_UP": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['MainThread']", "False"]
