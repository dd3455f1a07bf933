"""The production settings plus one bare view, the reference of the ingest benchmark.

Same middleware, same server: only the URL configuration grows `/bench/bare/`."""

from config.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.urls"
