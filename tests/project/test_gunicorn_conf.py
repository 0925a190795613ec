"""gunicorn.conf.py: workers and threads from the environment, CNN threads shared out between the workers."""
from __future__ import annotations

import json

import pytest

from tests.fresh_process import run_python

PROBE = """
import json, os, runpy
conf = runpy.run_path("gunicorn.conf.py")
names = ("workers", "threads", "worker_class", "preload_app")
print(json.dumps({**{name: conf[name] for name in names}, "cores": conf["_cores"],
                  "ort": os.environ["VISUALSEARCH_ORT_INTRA_THREADS"],
                  "tf": os.environ["VISUALSEARCH_TF_INTRA_THREADS"]}))
"""


def load_conf(env: dict[str, str]) -> dict:
    result = run_python(PROBE, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_defaults_one_worker_with_threads_and_no_preload():
    conf = load_conf({})
    assert (conf["workers"], conf["threads"], conf["worker_class"], conf["preload_app"]) == (1, 4, "gthread", False)
    assert conf["ort"] == conf["tf"] == str(conf["cores"])


@pytest.mark.parametrize("workers", [2, 64])
def test_more_workers_share_the_cores(workers):
    conf = load_conf({"GUNICORN_WORKERS": str(workers), "GUNICORN_THREADS": "2"})
    assert (conf["workers"], conf["threads"]) == (workers, 2)
    assert conf["ort"] == conf["tf"] == str(max(1, conf["cores"] // workers))


def test_explicit_cnn_threads_win():
    conf = load_conf({"GUNICORN_WORKERS": "2", "VISUALSEARCH_ORT_INTRA_THREADS": "3"})
    assert conf["ort"] == "3"
