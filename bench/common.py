"""What every benchmark shares: the run's environment, the processes it starts and stops, the
statistics it reports.

Every process is started by the runner, bound to 127.0.0.1, and stopped in a `finally`:
the app servers, Celery workers, a private redis-server on a free port. PostgreSQL is the
machine's, but the run uses its own database (`parley_bench` unless BENCH_DATABASE says otherwise).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.fakes import ports

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PUBLIC_BASE_URL = "https://parley.bench"
HOST = "127.0.0.1"


class InvariantBroken(AssertionError):
    """A correctness property failed (a duplicate row, a duplicate send, a lost frame)."""


# Environment -------------------------------------------------------------------------------


def free_port() -> int:
    return ports.free_port(HOST)


def pg_base_url() -> str:
    """The server part of the PostgreSQL URL: BENCH_PG_URL, else DATABASE_URL's, else local root."""
    url = os.environ.get("BENCH_PG_URL") or os.environ.get("DATABASE_URL") or ""
    if url.startswith("postgres"):
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"
    for user in ("root", "postgres"):
        probe = subprocess.run(
            ["psql", "-h", HOST, "-U", user, "-d", "postgres", "-Atc", "select 1"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            return f"postgres://{user}@{HOST}:5432"
    raise SystemExit("bench: no PostgreSQL reachable (set BENCH_PG_URL=postgres://user@host:port)")


@dataclass
class RunEnv:
    """The environment every process of one run shares (the runner included)."""

    database: str
    pg_url: str
    redis_url: str
    twilio_base: str = "http://127.0.0.1:9"
    extra: dict = field(default_factory=dict)
    # Fixed, public keys that only protect the throwaway bench database: a reused seed stays readable.
    secret_key: str = "parley-bench-only-" + hashlib.sha256(b"parley bench secret key").hexdigest()
    field_key: str = base64.urlsafe_b64encode(hashlib.sha256(b"parley bench field key").digest()).decode()

    @property
    def database_url(self) -> str:
        return f"{self.pg_url}/{self.database}"

    def as_env(self) -> dict[str, str]:
        env = {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "DEBUG": "false",
            "SECRET_KEY": self.secret_key,
            "FIELD_ENCRYPTION_KEY": self.field_key,
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "TWILIO_API_BASE": self.twilio_base,
            "TWILIO_MEDIA_HOSTS": "127.0.0.1",
            # A connection pool per process: what the Procfile ships (see docs/benchmarks.md).
            "DB_CONN_MAX_AGE": "0",
            "DB_POOL": "true",
            "LOG_LEVEL": "WARNING",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(self.extra)
        return env

    def apply(self) -> None:
        """Make this process (the runner) use the run's settings; call before django.setup()."""
        os.environ.update(self.as_env())
        os.environ.pop("PARLEY_TEST_DB", None)

    def child_env(self, **overrides) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PARLEY_TEST_DB",)}
        env.update(self.as_env())
        env.update({k: str(v) for k, v in overrides.items()})
        env["PYTHONPATH"] = str(ROOT)
        return env


def psql(pg_url: str, database: str, sql: str) -> str:
    parts = urlsplit(pg_url)
    cmd = ["psql", "-h", parts.hostname or HOST, "-p", str(parts.port or 5432), "-d", database, "-v", "ON_ERROR_STOP=1",
           "-Atc", sql]
    if parts.username:
        cmd[1:1] = ["-U", parts.username]
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = parts.password
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def database_ensure(env: RunEnv, *, fresh: bool) -> None:
    exists = psql(env.pg_url, "postgres", f"select 1 from pg_database where datname = '{env.database}'")
    if exists and fresh:
        psql(env.pg_url, "postgres", f'drop database "{env.database}" with (force)')
        exists = ""
    if not exists:
        psql(env.pg_url, "postgres", f'create database "{env.database}"')
    subprocess.run([PY, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env.child_env(), check=True)


# Processes ---------------------------------------------------------------------------------


class Proc:
    """A child process in its own process group, stopped (TERM, then KILL) by `stop()`."""

    def __init__(self, name: str, cmd: list[str], *, env: dict, port: int | None = None, cwd: Path = ROOT):
        self.name, self.cmd, self.port = name, cmd, port
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
        self.popen = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_port(self, timeout: float = 30.0) -> "Proc":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=0.5):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {timeout}s:\n{self.tail()}")

    def wait_text(self, text: str, timeout: float = 30.0) -> "Proc":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return self
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no {text!r} within {timeout}s:\n{self.tail()}")

    def output(self) -> str:
        with open(self.log.name, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


@contextlib.contextmanager
def running(*procs: Proc):
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            proc.stop()


def redis_start() -> Proc:
    port = free_port()
    proc = Proc("redis", ["redis-server", "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
                          "--protected-mode", "yes", "--databases", "16"], env=dict(os.environ), port=port)
    return proc.wait_port()


SERVERS = {
    # One process: Daphne has no worker mode.
    "daphne": lambda port: [PY, "-m", "daphne", "-v", "0", "-b", HOST, "-p", str(port), "--proxy-headers", "config.asgi:application"],
    "uvicorn": lambda port: [PY, "-m", "uvicorn", "--host", HOST, "--port", str(port), "--workers", "2",
                             "--no-access-log", "--lifespan", "off", "config.asgi:application"],
    "gunicorn": lambda port: [PY, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2", "-b",
                              f"{HOST}:{port}", "--access-logfile", "-", "--log-level", "warning",
                              "config.asgi:application"],
}


def server_start(kind: str, env: RunEnv) -> Proc:
    port = free_port()
    child = env.child_env()
    if kind == "gunicorn":
        child["GUNICORN_CMD_ARGS"] = "--access-logfile /dev/null"
    proc = Proc(kind, SERVERS[kind](port), env=child, port=port)
    try:
        proc.wait_port(60)
        _warm(port)
    except BaseException:
        proc.stop()
        raise
    return proc


def _warm(port: int) -> None:
    # Every worker process imports the app on its first request; not part of a measurement.
    import requests

    for _ in range(8):
        with contextlib.suppress(requests.RequestException):
            requests.post(f"http://{HOST}:{port}/bench/bare/", data=b"x", timeout=10)


def worker_start(env: RunEnv, *, concurrency: int, name: str = "worker") -> Proc:
    nodename = f"{name}-{secrets.token_hex(3)}@bench"
    cmd = [PY, "-m", "celery", "--app", "config", "worker", "--loglevel", "WARNING", "--concurrency", str(concurrency),
           "--pool", "prefork", "--without-gossip", "--without-mingle", "--without-heartbeat",
           "-n", nodename]
    proc = Proc(name, cmd, env=env.child_env())
    # Ready when it answers a ping on the broker (the runner shares the run's settings).
    from config.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{proc.tail()}")
        if app.control.ping(destination=[nodename], timeout=0.5):
            return proc
    proc.stop()
    raise RuntimeError(f"{name} did not answer a ping within 60s")


# Statistics --------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latency_summary(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {
        "count": len(ms),
        "p50_ms": _r(percentile(ms, 50)),
        "p95_ms": _r(percentile(ms, 95)),
        "p99_ms": _r(percentile(ms, 99)),
        "p999_ms": _r(percentile(ms, 99.9)),
        "max_ms": _r(max(ms) if ms else None),
        "mean_ms": _r(statistics.fmean(ms) if ms else None),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, 3)


def _r(value):
    return None if value is None else round(value, 2)


# Machine -----------------------------------------------------------------------------------


def fingerprint(env: RunEnv) -> dict:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    import redis

    info = redis.Redis.from_url(env.redis_url).info("server")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": mem_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": psql(env.pg_url, "postgres", "show server_version"),
        "redis": info.get("redis_version"),
        "loadavg_start": os.getloadavg(),
    }
