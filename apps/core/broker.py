"""Enqueueing tasks when the broker may be down.

The row a task works on is committed first (the outbox, an inbound event); the task is only the
fast path, and the beat sweeps find rows whose task never made it. So an enqueue that fails is
logged and dropped, never raised into a request that already committed. After a failure this
process stops trying for a few seconds: under ASGI the sync views share one thread, and a
broker that hangs (paused, failing over) would otherwise cost every waiting request a timeout.
The pause is this process's knowledge of its own connection; no other process needs it.
"""

import logging
import threading
import time

from django.db import transaction

log = logging.getLogger(__name__)

# Seconds to skip publishing after a failed publish; rows wait for the sweep meanwhile.
PAUSE_AFTER_FAILURE = 5.0

_lock = threading.Lock()
_down_until = 0.0


def enqueue(task, *args) -> bool:
    """`task.delay(*args)`; False (and logged) when the broker is unreachable."""
    global _down_until
    # Eager Celery (the embedded default) never touches a broker.
    if time.monotonic() < _down_until and not task.app.conf.task_always_eager:
        log.info("broker marked down: %s(%s) left for the sweep", task.name, args)
        return False
    try:
        task.delay(*args)
    except Exception as exc:  # noqa: BLE001 - the committed row is the record; the sweep retries
        with _lock:
            _down_until = time.monotonic() + PAUSE_AFTER_FAILURE
        log.warning("could not enqueue %s(%s): %s; left for the sweep", task.name, args, type(exc).__name__)
        return False
    return True


def enqueue_on_commit(task, *args) -> None:
    """`task.delay_on_commit(*args)` that never fails the request whose transaction committed."""
    transaction.on_commit(lambda: enqueue(task, *args), robust=True)


def reset() -> None:
    """Forget a failure (tests, or an operator who knows the broker is back)."""
    global _down_until
    with _lock:
        _down_until = 0.0
