"""Settings, read from the environment with embedded defaults.

With nothing but the development `.env` that `make run` writes (DEBUG on, a random secret), this is the embedded
configuration: SQLite, the in-process vector index and inline indexing, so `make run` needs no services.
Production sets DATABASE_URL, ELASTICSEARCH_URL, DJANGO_SECRET_KEY and friends, and has no `.env`; no file is
edited to switch. Every variable is listed in the README's configuration table.
"""
from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
# Only development has a `.env` (`make run` writes it: DEBUG on, a random secret); production sets real variables.
# DJANGO_ENV_FILE names another file, or none when empty. Variables already set win over the file.
ENV_FILE = os.environ.get("DJANGO_ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE:
    environ.Env.read_env(ENV_FILE)  # a missing file is fine


def _is_local(host: str) -> bool:
    return host in ("127.0.0.1", "[::1]", "::1", "localhost", "testserver") or host.endswith(".localhost")


DEBUG = env.bool("DJANGO_DEBUG", default=False)
# A production deploy without a secret must fail fast; the insecure default exists only for DEBUG runs.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY and not DEBUG:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off: set it to a long random value. (For development, "
        "`make run` writes a .env with DEBUG on and a secret.)"
    )
SECRET_KEY = SECRET_KEY or "insecure-dev-only-key"
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
# DEBUG pages show settings and stack traces to anyone: never on a host the public can reach.
if DEBUG and (_public := [host for host in ALLOWED_HOSTS if not _is_local(host)]):
    raise ImproperlyConfigured(
        f"DJANGO_DEBUG is on while DJANGO_ALLOWED_HOSTS names public hosts {_public}: set DJANGO_DEBUG=0 "
        "(and remove a development .env) for production, or keep DEBUG to localhost."
    )
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])


def _proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """("HTTP_X_FORWARDED_PROTO", "https") from "X-Forwarded-Proto": the header a TLS proxy sets to "https"."""
    if not name:
        return None
    key = name.upper().replace("-", "_")
    return (key if key.startswith("HTTP_") else f"HTTP_{key}", "https")


# Behind a TLS-terminating proxy, the header it sets, so that request.is_secure() and the absolute URLs the API
# returns say https. Only when the proxy always sets (or strips) it: otherwise a client could claim https.
SECURE_PROXY_SSL_HEADER = _proxy_ssl_header(env("DJANGO_SECURE_PROXY_SSL_HEADER", default=""))
# The site is reached over HTTPS only: cookies never travel over http, and browsers remember to use https.
HTTPS = env.bool("DJANGO_HTTPS", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=3600 if HTTPS else 0)  # raise once HTTPS is proven
# Both are promises about every subdomain of the shop's domain: the shop decides (README, "Production").
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=False)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)  # usually the proxy redirects
# A load balancer probes over plain http inside the network: its health checks are never redirected.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# Content-Security-Policy for every HTML page outside /api/ (Swagger UI runs inline scripts): scripts only
# from the site itself, images also as data:/blob: URLs (the search preview), no framing, no plugins.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                           "script-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; "
                           "form-action 'self'")
# Admin logins: failures allowed per client address and per username before a pause (cache-counted).
ADMIN_LOGIN_FAILURES = env.int("DJANGO_ADMIN_LOGIN_FAILURES", default=5)
ADMIN_LOGIN_PAUSE_S = env.int("DJANGO_ADMIN_LOGIN_PAUSE", default=15 * 60)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "catalog",
    "visualsearch",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from the web process itself (no web server needed), compressed and cached for a year under their
    # hashed names; it answers before the rest of the stack, right after the security headers.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "visualsearch.middleware.UploadGuardMiddleware",  # before CSRF: it parses the body in process_view
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "project.security.ContentSecurityPolicyMiddleware",
    "project.security.AdminLoginThrottleMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

VAR_DIR = Path(env("DJANGO_VAR_DIR", default=str(BASE_DIR / "var")))
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if "DATABASE_URL" not in env:
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded default must work on a fresh clone
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # utf8mb4: product titles carry emoji and CJK; the test database must be created the same way.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"charset": "utf8mb4"})
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Throttle counts must be shared by all web processes in production: e.g. CACHE_URL=redis://127.0.0.1:6379/1.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# `manage.py import_catalog`: photo downloads (catalog/fetching.py refuses internal addresses unless allow-listed).
CATALOG_IMPORT = {
    # Hosts, addresses or networks (CIDR) photos may be fetched from although they are internal, e.g. a shop's own
    # image server on 10.0.0.0/8. Empty: only public addresses.
    "ALLOWED_HOSTS": env.list("CATALOG_IMPORT_ALLOWED_HOSTS", default=[]),
    "MAX_BYTES": env.int("CATALOG_IMPORT_MAX_BYTES", default=25 * 1024 * 1024),
    "TIMEOUT_S": env.float("CATALOG_IMPORT_TIMEOUT", default=30.0),  # per photo, redirects included
    "WORKERS": env.int("CATALOG_IMPORT_WORKERS", default=8),  # concurrent downloads
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"  # filled by `manage.py collectstatic` (`make serve` runs it)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names (admin/css/base.3f2a….css) so WhiteNoise can let browsers cache them for a year, plus gzip
    # copies. With DEBUG off a page whose static file is missing from the manifest is an error: run collectstatic
    # after every deploy. With DEBUG on, files are served from the apps under their plain names.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media")))
# Development convenience. In production a web server or object storage serves media (Django's static view is
# slow, and would hand out every stored photo, including those of inactive products).
SERVE_MEDIA = env.bool("DJANGO_SERVE_MEDIA", default=DEBUG)

# Uploads: Django keeps small files in memory and spools larger ones to disk; the hard cap is ours (imaging.py).
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    # The API is public; staff use the browsable API with their admin session. No BasicAuthentication: it would
    # check every guessed password (a PBKDF2 hash each) before the throttle runs.
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_THROTTLE_RATES": {"visual_search": env("VISUALSEARCH_THROTTLE_RATE", default="120/min")},
    # Client identity for throttling: 0 = the socket address. Behind N trusted proxies set N, or any client could
    # pick its identity with a forged X-Forwarded-For.
    "NUM_PROXIES": env.int("DJANGO_NUM_PROXIES", default=0),
    "EXCEPTION_HANDLER": "visualsearch.api.errors.json_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Visual product search API",
    "DESCRIPTION": "Search the catalog with a photo; browse products.",
    "VERSION": "1.0.0",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- Visual search -----------------------------------------------------------------------------------------------


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# EfficientNet-Lite0 runs on ONNX Runtime (faster for one query, no TensorFlow in the process) or TensorFlow; both
# give the same vectors under the same id, so switching needs no reindex.
_EXTRACTOR_RUNTIME = env("VISUALSEARCH_EXTRACTOR_RUNTIME", default="onnxruntime")
if _EXTRACTOR_RUNTIME not in ("onnxruntime", "tensorflow"):
    raise ImproperlyConfigured("VISUALSEARCH_EXTRACTOR_RUNTIME must be 'onnxruntime' or 'tensorflow'")
# Extractors and indexes are chosen like CACHES: an alias → {"BACKEND": dotted path, "OPTIONS": {...}}.
_EXTRACTORS = {
    "efficientnet_lite0": {
        "BACKEND": "visualsearch.extractors.efficientnet_lite0.EfficientNetLite0Extractor",
        "OPTIONS": {
            "weights": env("VISUALSEARCH_WEIGHTS", default=None),
            "runtime": _EXTRACTOR_RUNTIME,
            # ONNX Runtime threads per embed call. A web worker embeds one query at a time, so by default that
            # query gets every usable core; with W workers on C cores give each about C / W (0 = ONNX Runtime's
            # choice). TensorFlow has its own pools (VISUALSEARCH_TF_*_THREADS below).
            "intra_op_threads": env.int("VISUALSEARCH_ORT_INTRA_THREADS", default=_usable_cpus()),
            # The ONNX model is written from the weights at the first start and reused by later ones.
            "cache_dir": str(VAR_DIR / "models"),
        },
    },
    "vgg16": {
        "BACKEND": "visualsearch.extractors.vgg16.VGG16Extractor",
        "OPTIONS": {"weights": env("VISUALSEARCH_WEIGHTS", default="imagenet")},
    },
}
VISUALSEARCH_EXTRACTOR = env("VISUALSEARCH_EXTRACTOR", default="efficientnet_lite0")
if VISUALSEARCH_EXTRACTOR not in _EXTRACTORS:
    raise ImproperlyConfigured(f"VISUALSEARCH_EXTRACTOR must be one of {sorted(_EXTRACTORS)}")
# "default" feeds the index; the named aliases let `reindex --extractor NAME` precompute vectors before a switch.
VISUALSEARCH_EXTRACTORS = {"default": _EXTRACTORS[VISUALSEARCH_EXTRACTOR], **_EXTRACTORS}

ELASTICSEARCH_URL = env("ELASTICSEARCH_URL", default="")
# "elasticsearch" whenever a cluster is configured, unless told otherwise.
VISUALSEARCH_INDEX_BACKEND = env("VISUALSEARCH_INDEX_BACKEND", default="elasticsearch" if ELASTICSEARCH_URL else "embedded")
if VISUALSEARCH_INDEX_BACKEND not in ("embedded", "elasticsearch"):
    raise ImproperlyConfigured("VISUALSEARCH_INDEX_BACKEND must be 'embedded' or 'elasticsearch'")
if VISUALSEARCH_INDEX_BACKEND == "elasticsearch":
    _INDEX = {
        "BACKEND": "visualsearch.backends.elasticsearch.ElasticsearchIndex",
        "OPTIONS": {
            "hosts": env.list("ELASTICSEARCH_URL"),
            "alias": env("ELASTICSEARCH_INDEX_ALIAS", default="images"),
            "shards": env.int("ELASTICSEARCH_SHARDS", default=1),
            "replicas": env.int("ELASTICSEARCH_REPLICAS", default=0),
            "hnsw_m": env.int("ELASTICSEARCH_HNSW_M", default=16),
            "hnsw_ef_construction": env.int("ELASTICSEARCH_HNSW_EF_CONSTRUCTION", default=100),
            "quantization": env("ELASTICSEARCH_QUANTIZATION", default="int8_hnsw"),
            "num_candidates": env.int("ELASTICSEARCH_NUM_CANDIDATES", default=10_000),
            "timeout": env.float("ELASTICSEARCH_TIMEOUT", default=5.0),
            "bulk_chunk": env.int("ELASTICSEARCH_BULK_CHUNK", default=500),  # documents per bulk request
            # Seconds without a renewal after which a rebuild counts as crashed and the next `reindex` may start.
            "rebuild_lock_ttl": env.float("ELASTICSEARCH_REBUILD_LOCK_TTL", default=300.0),
            "rebuild_merge_timeout": env.float("ELASTICSEARCH_REBUILD_MERGE_TIMEOUT", default=1800.0),
            # One segment is fastest to search up to a few 100k photos; see the README before raising it.
            "rebuild_max_segments": env.int("ELASTICSEARCH_REBUILD_MAX_SEGMENTS", default=1),
        },
    }
else:
    _INDEX = {"BACKEND": "visualsearch.backends.embedded.EmbeddedIndex", "OPTIONS": {}}
VISUALSEARCH_INDEXES = {"default": _INDEX}


VISUALSEARCH = {
    # Minimum cosine similarity for a product to be shown. Calibrate on your own photos with
    # `manage.py evaluate DATASET_DIR --report DIR`: it recommends the lowest threshold that keeps precision
    # ≥ --target-precision and shows the share of shopper photos that would get no result. With EfficientNet-Lite0,
    # unrelated photos score ~0.1–0.5 and re-shot objects (UKBench) ~0.6–0.98 (0.78 for 95 % pair precision);
    # shelf photos against catalog shots (grocery) mostly score 0.4–0.6, where 0.5 leaves 72 % of queries empty.
    # Re-calibrate after changing VISUALSEARCH_EXTRACTOR.
    "SEARCH_THRESHOLD": env.float("VISUALSEARCH_THRESHOLD", default=0.5),
    "MAX_UPLOAD_BYTES": env.int("VISUALSEARCH_MAX_UPLOAD_BYTES", default=25 * 1024 * 1024),
    "MAX_PIXELS": env.int("VISUALSEARCH_MAX_PIXELS", default=16_000_000),
    "MAX_RESULTS": 100,
    # How long the shopper page keeps a query photo (in CACHES, as a JPEG at the analysed size) so its results URL
    # can be reloaded, shared, filtered and paged without a new upload. Use a shared cache with several processes.
    "QUERY_HANDLE_TTL": env.int("VISUALSEARCH_QUERY_HANDLE_TTL", default=30 * 60),
    # The admin report of shopper searches that found nothing close: days kept, and whether their photos are kept
    # too (off: only time, filters and the best score; shoppers' photos are personal data).
    "UNMATCHED_SEARCH_DAYS": env.int("VISUALSEARCH_UNMATCHED_SEARCH_DAYS", default=90),
    "KEEP_UNMATCHED_PHOTOS": env.bool("VISUALSEARCH_KEEP_UNMATCHED_PHOTOS", default=False),
    # Decodes running at once per process (each can hold tens of MB of pixels); default: the usable CPUs.
    "MAX_CONCURRENT_DECODES": env.int("VISUALSEARCH_MAX_CONCURRENT_DECODES", default=_usable_cpus()),
    # Build the CNN and load the index in the background when a web process gets its first request (after a
    # pre-forking server has forked), so the first search does not wait for them.
    "WARM_UP": env.bool("VISUALSEARCH_WARM_UP", default=True),
    # "inline": index in the request after commit (embedded default); "celery": hand off to workers.
    "TASK_RUNNER": env("VISUALSEARCH_TASK_RUNNER", default="inline"),
    # TensorFlow thread pools per process, fixed before TensorFlow starts. With W web workers on C cores, give
    # each about C / W intra-op threads; inter-op threads matter little for one CNN. 0 = TensorFlow's choice.
    "TF_INTRA_THREADS": env.int("VISUALSEARCH_TF_INTRA_THREADS", default=_usable_cpus()),
    "TF_INTER_THREADS": env.int("VISUALSEARCH_TF_INTER_THREADS", default=2),
    # The local-feature stage (visualsearch.recognition): RootSIFT, visual words, geometric verification.
    "RECOGNITION": {
        "ENABLED": env.bool("VISUALSEARCH_RECOGNITION", default=True),
        # Features per catalog photo (part of the feature id) and per query. 1500 on both sides (the recipe that
        # reached 0.998 recall@1 matching real phone photos exhaustively) instead of 1000 gave grocery-packages
        # recall@1 0.767 → 0.771, recall@5 0.911 → 0.918, "exact" precision 0.993 both; 1500 on the query side
        # alone did not (0.775 / 0.912, precision 0.990). Storage ~19 bytes per feature: ≤ 29 KB a photo.
        "MAX_FEATURES": env.int("VISUALSEARCH_RECOGNITION_FEATURES", default=1500),
        "QUERY_FEATURES": env.int("VISUALSEARCH_RECOGNITION_QUERY_FEATURES", default=1500),
        # Catalog photos are analysed at this size, once, when indexed (part of the feature id: a change means new
        # features at the next `reindex`); SIFT's cost grows with the area (~220 ms at 1024 px, ~100 at 800).
        "CATALOG_LONG_SIDE": env.int("VISUALSEARCH_RECOGNITION_CATALOG_SIDE", default=1024),
        "QUERY_LONG_SIDE": env.int("VISUALSEARCH_RECOGNITION_QUERY_SIDE", default=800),  # per search
        # Queries are first analysed at this smaller size (SIFT costs ~40 % less) and again at QUERY_LONG_SIDE only
        # when that finds no exact match: most shopper photos of a stocked product are recognised at once.
        # 0 = always the full size.
        "FAST_QUERY_LONG_SIDE": env.int("VISUALSEARCH_RECOGNITION_FAST_SIDE", default=640),
        # Photos analysed at once by `reindex` and vocabulary training, one per core (the per-upload path analyses
        # its few photos one by one and leaves the cores to searches).
        "ANALYSIS_WORKERS": env.int("VISUALSEARCH_RECOGNITION_WORKERS", default=_usable_cpus()),
        "WORDS": env.int("VISUALSEARCH_VOCABULARY_WORDS", default=65_536),  # upper bound; small catalogs get fewer
        "TRAINING_PHOTOS": 4000,  # photos sampled from the catalog to train a vocabulary
        "TRAINING_DESCRIPTORS": 1_000_000,
        "GLOBAL_CANDIDATES": env.int("VISUALSEARCH_GLOBAL_CANDIDATES", default=30),  # products from the CNN kNN
        "WORD_CANDIDATES": env.int("VISUALSEARCH_WORD_CANDIDATES", default=30),  # photos from the visual words
        # Catalogs with at most this many photos verify every photo sharing a word with the query (no shortlist).
        "EXHAUSTIVE_BELOW": env.int("VISUALSEARCH_EXHAUSTIVE_BELOW", default=300),
        "QUERY_WORDS": 600,
        # Words per query feature for verification (multiple assignment), for vocabularies of at least
        # MULTIPLE_ASSIGNMENT_WORDS words: large vocabularies split a feature's views over neighbouring words (3 gave
        # +3 points of recall@1 at 38k words on grocery); small ones do better with 1.
        "QUERY_ASSIGNMENTS": env.int("VISUALSEARCH_QUERY_ASSIGNMENTS", default=3),
        "MULTIPLE_ASSIGNMENT_WORDS": 16_384,  # distinct words per word query (Elasticsearch's boolean clause limit is >= 1024)
    },
}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="memory://")  # production: redis://… (scripts/services.sh)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", default="visualsearch")
# Nothing is lost when a worker dies: a task is acknowledged only after it ran (acks_late), a worker process killed
# mid-task gives its task back (reject_on_worker_lost), and a worker holds one task at a time beyond the running one
# (prefetch 1). A task a dead worker held unacknowledged is redelivered after the visibility timeout: longer than
# the longest task (MAX_TASK_IMAGES photos, ~1–2 min), short enough that a crash delays indexing only minutes.
# Tasks are idempotent (reconciled against the database), so running one twice redoes nothing twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600),
    "socket_connect_timeout": 2,  # the web process never waits long for a broker that is down
}
# A save's on-commit hand-off to a broker that is down fails at once (logged; the photo stays pending for
# `reindex --missing`) instead of retrying inside the web request.
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_CONNECTION_TIMEOUT = 2

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"visualsearch": {"handlers": ["console"], "level": env("VISUALSEARCH_LOG_LEVEL", default="INFO")}},
}
