"""TensorFlow's thread pools are sized from settings before TensorFlow starts."""
from __future__ import annotations

from tests.fresh_process import run_python

# Start Django (the app sizes the pools when it is ready), then run TensorFlow and count this process's threads.
PROBE = """
import os, django
django.setup()
import tensorflow as tf
x = tf.random.normal((256, 256))
tf.matmul(x, x).numpy()
print(len(os.listdir("/proc/self/task")))
"""


def threads_with(intra: int, inter: int) -> int:
    env = {"DJANGO_SETTINGS_MODULE": "project.settings", "DJANGO_SECRET_KEY": "x",
           "VISUALSEARCH_TF_INTRA_THREADS": str(intra),
           "VISUALSEARCH_TF_INTER_THREADS": str(inter)}  # fmt: skip
    result = run_python(PROBE, env)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


def test_tensorflow_thread_pools_follow_the_settings():
    # TensorFlow creates its pool threads up front, so 5 more per pool show as ~10 more threads (unsized, both
    # runs get TensorFlow's defaults and the same count).
    assert threads_with(6, 6) - threads_with(1, 1) >= 8
