"""Gunicorn, the production web server: `make serve`, or `gunicorn -c gunicorn.conf.py --bind HOST:PORT`.

Gunicorn reads this file by itself when started from this directory. Settings that gunicorn takes on its command
line or in GUNICORN_CMD_ARGS win over the ones here.
"""
import os

wsgi_app = "project.wsgi:application"
bind = ["127.0.0.1:8000"]  # `make serve` passes --bind $(HOST)

# Workers × threads. One search keeps both cores of a 2-core machine busy by itself: the CNN runs on ONNX Runtime
# with VISUALSEARCH_ORT_INTRA_THREADS threads (default: every usable core) and SIFT and the homography fits are
# multi-threaded too. More processes would not search faster; each would hold its own model and its own copy of
# the in-process index (~1 GB at 10k photos with recognition). So: one worker, and a few threads that keep the
# pages, the admin, static files and requests waiting on the database or Elasticsearch going while a search
# computes (concurrent searches share the cores). More cores: about one worker per 2–4 cores, and
# VISUALSEARCH_ORT_INTRA_THREADS / VISUALSEARCH_TF_INTRA_THREADS default to cores ÷ workers (below).
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", "1"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
for _variable in ("VISUALSEARCH_ORT_INTRA_THREADS", "VISUALSEARCH_TF_INTRA_THREADS"):
    os.environ.setdefault(_variable, str(max(1, _cores // workers)))  # workers inherit the environment

# No preload: each worker imports Django and builds the model itself, after the fork, so the master never holds
# the thread pools of ONNX Runtime, TensorFlow or OpenCV, which are not fork-safe. post_worker_init (below) then warms
# the worker up before it accepts its first connection. Workers are not recycled (max_requests = 0): a new one
# would build the model and load the index again.
preload_app = False
max_requests = 0
graceful_timeout = 30  # on SIGTERM, requests in flight get this long to finish

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None  # "-": stdout; a path; empty: no access log
errorlog = "-"
# The site decides which proxy headers to trust (DJANGO_SECURE_PROXY_SSL_HEADER, DJANGO_NUM_PROXIES), exactly as
# under runserver; gunicorn would otherwise take X-Forwarded-Proto from any process on 127.0.0.1 as https.
forwarded_allow_ips = ""
# Gunicorn's run-time control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl), shared by every
# instance; signals do the same job (HUP: reload workers, TERM: graceful stop).
control_socket_disable = True


def post_worker_init(worker):
    """Build the CNN and load the index in the new worker before it serves (the master's timeout keeps ticking)."""
    from visualsearch.warmup import warm_up_before_serving

    def heartbeat() -> bool:
        worker.notify()
        return worker.alive

    warm_up_before_serving(heartbeat)
