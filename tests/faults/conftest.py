"""Fault tests: the real processes, started and stopped by the tests themselves.

Each test gets its own `redis-server` on a free loopback port (no persistence, so a restart is
empty), and, as it asks for them, a Celery worker subprocess and a uvicorn web subprocess that
talk to that Redis and to the TEST database pytest-django created (data comes from
`transactional_db`, so every process sees what the others committed), and a fake Twilio server.
The machine's own PostgreSQL and Redis are never stopped or reconfigured: outages are made on
the processes started here (SIGSTOP / SIGKILL on our Redis, a TCP proxy in front of PostgreSQL).
"""

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from django.db import connection
from twilio.request_validator import RequestValidator

from tests import factories
from tests.fakes.ports import free_port
from tests.fakes.twilio import FakeTwilio

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    missing = None
    if shutil.which("redis-server") is None:
        missing = "redis-server is not installed"
    elif not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        missing = "fault tests share committed data between processes: they need DATABASE_URL (PostgreSQL)"
    for item in items:
        if Path(str(item.fspath)).parent != here:
            continue
        if missing and not os.environ.get("CI"):
            item.add_marker(pytest.mark.skip(reason=missing))


def wait_for(predicate, *, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll until `predicate()` is truthy; return its value or fail the test with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _stop(process: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


class RedisServer:
    """A private redis-server: empty on every start, paused with SIGSTOP, killed with SIGKILL."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for(self.ping, timeout=START_TIMEOUT, what="redis-server to answer PING")
        return self

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: everything it held (queued tasks, rate-limit buckets) is gone."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=5)

    def restart(self) -> "RedisServer":
        """Start again on the same port, empty (nothing was saved)."""
        return self.start()

    def queued(self) -> int:
        """Tasks waiting in the default queue plus those delivered but not acknowledged."""
        client = self.client()
        return client.llen("celery") + client.hlen("unacked")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
        _stop(self.process)


class Services:
    """Environment shared by the subprocesses of one test."""

    def __init__(self, redis: RedisServer, fake: FakeTwilio, tmp_path: Path):
        self.redis = redis
        self.fake = fake
        self.tmp_path = tmp_path
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"

    def env(self, **overrides) -> dict[str, str]:
        db = connection.settings_dict
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        host = db.get("HOST") or "127.0.0.1"
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PARLEY_TEST_DB", "DJANGO_ALLOW_ASYNC_UNSAFE", "PYTEST_CURRENT_TEST")
        }
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=f"postgres://{auth}@{host}:{db.get('PORT') or 5432}/{db['NAME']}",
            REDIS_URL=self.redis.url,
            CELERY_TASK_ALWAYS_EAGER="false",
            PUBLIC_BASE_URL=self.web_url,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            TWILIO_API_BASE=self.fake.base_url,
            TWILIO_MEDIA_HOSTS="127.0.0.1",
            PROVIDER_CONNECT_TIMEOUT="1",
            PROVIDER_READ_TIMEOUT="2",
            MEDIA_ROOT=str(self.tmp_path / "media"),
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        env.update(overrides)
        return env


class Proc:
    """A subprocess in its own process group, its output in a log file (shown when a test fails)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path):
        self.name = name
        self.args = args
        self.env = env
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> "Proc":
        handle = open(self.log, "ab")
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        handle.close()
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig=signal.SIGTERM) -> None:
        _stop(self.process, sig)


class Worker(Proc):
    def __init__(self, services: Services, *, pool: str = "threads", concurrency: int = 4, **env):
        self.hostname = f"fault-{uuid.uuid4().hex[:8]}@127.0.0.1"
        log = services.tmp_path / f"worker-{self.hostname.split('@')[0]}.log"
        super().__init__(
            "worker",
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", pool, "-c", str(concurrency),
             "-n", self.hostname, "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "INFO"],
            services.env(**env),
            log,
        )

    def start(self) -> "Worker":
        super().start()
        wait_for(lambda: " ready." in self.output() or not self.alive(), timeout=START_TIMEOUT,
                 what="the Celery worker to be ready")
        assert self.alive(), f"the Celery worker died:\n{self.output()[-3000:]}"
        return self

    def pool_children(self) -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]


class Web(Proc):
    def __init__(self, services: Services, **env):
        super().__init__(
            "web",
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
             "--port", str(services.web_port), "--lifespan", "off", "--log-level", "warning", "--no-access-log"],
            services.env(**env),
            services.tmp_path / "web.log",
        )
        self.url = services.web_url

    def start(self) -> "Web":
        super().start()

        def up():
            if not self.alive():
                return True
            try:
                requests.get(self.url + "/login/", timeout=2)
                return True
            except requests.RequestException:
                return False

        wait_for(up, timeout=START_TIMEOUT, what="the web server to answer")
        assert self.alive(), f"the web server died:\n{self.output()[-3000:]}"
        return self


@pytest.fixture
def postgresql(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("fault tests need PostgreSQL")


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake(settings):
    fake = FakeTwilio().start()
    fake.add_account(factories.TEST_ACCOUNT_SID, factories.TEST_AUTH_TOKEN, [factories.TEST_SENDER])
    settings.TWILIO_API_BASE = fake.base_url
    try:
        yield fake
    finally:
        fake.release_hangs()
        fake.stop()


@pytest.fixture
def services(postgresql, redis_server, fake, tmp_path, settings):
    services = Services(redis_server, fake, tmp_path)
    # The test process signs and sweeps like the web and beat processes do.
    settings.PUBLIC_BASE_URL = services.web_url
    settings.REDIS_URL = redis_server.url
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return services


@pytest.fixture
def processes(services, request):
    """Start workers and web servers with `processes.worker(...)` / `processes.web(...)`;
    every one is stopped at the end of the test (before the database is flushed)."""
    started: list[Proc] = []

    class Starter:
        def worker(self, **kwargs) -> Worker:
            proc = Worker(services, **kwargs)
            started.append(proc)
            return proc.start()

        def web(self, **env) -> Web:
            proc = Web(services, **env)
            started.append(proc)
            return proc.start()

    try:
        yield Starter()
    finally:
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        for proc in reversed(started):
            proc.stop()
            if failed:
                sys.stderr.write(f"\n----- {proc.name} log -----\n{proc.output()[-4000:]}\n")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def broker(services):
    """The test process publishes tasks to the test's Redis, like beat and the web do."""
    from config.celery import app

    saved = {key: app.conf[key] for key in ("broker_url", "task_always_eager")}
    app.conf.broker_url = services.redis.url
    app.conf.task_always_eager = False
    _reset_pools(app)
    try:
        yield app
    finally:
        app.conf.update(saved)
        _reset_pools(app)


def _reset_pools(app) -> None:
    # The app caches its pools; kombu keeps one per broker URL (never close them: they are
    # shared with whatever used that URL before, and come back when the URL is restored).
    app._pool = None
    app.amqp._producer_pool = None


def sign(url: str, params: dict, token: str = factories.TEST_AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def post_webhook(base_url: str, path: str, params: dict, *, timeout: float = 10.0, session=None) -> requests.Response:
    """POST a Twilio-format form body to a running server, signed over its public URL."""
    signature = sign(base_url + path, params)
    return (session or requests).post(
        base_url + path,
        data=urlencode(params),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        timeout=timeout,
    )


def post_concurrently(calls: list, *, max_workers: int = 16) -> list:
    """Run zero-argument callables at once (released together by a barrier); their results in order."""
    results: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index, call):
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 - reported by the caller's assertions
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


class TcpProxy:
    """A loopback TCP proxy to PostgreSQL that can be taken down (connections refused and the
    open ones cut) and brought back, so "the database is unreachable" needs no change to the
    machine's PostgreSQL."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def up(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                # close() alone does not wake a thread blocked in accept(): it would keep accepting.
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (a, b):
                with self._lock:
                    self._conns.discard(sock)
                try:
                    sock.close()
                except OSError:
                    pass
