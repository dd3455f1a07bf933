"""Outbound pacing: a token bucket per sender, shared by every worker through Redis.

`take(key, rate=...)` returns 0.0 when a token was taken, or the seconds to wait before one is
available. Without REDIS_URL (the embedded default, one process) an in-process bucket stands in.
"""

import threading
import time
from functools import lru_cache

from django.conf import settings

KEY_PREFIX = "parley:ratelimit:"

# KEYS[1] = bucket; ARGV = rate per second, capacity. Redis' own clock, so workers on hosts
# with skewed clocks still share one notion of time. Returns the wait in milliseconds (0 = taken).
_TAKE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 1000)
return wait
"""


def take(key: str, *, rate: float | None = None, capacity: float | None = None) -> float:
    """Take one token from the bucket `key`. 0.0 when taken, else seconds until one is free."""
    rate = float(rate if rate is not None else settings.SEND_RATE_PER_SECOND)
    if rate <= 0:
        return 0.0
    capacity = float(capacity if capacity is not None else max(rate, 1.0))
    if settings.REDIS_URL:
        script = _script(settings.REDIS_URL)
        wait_ms = script(keys=[KEY_PREFIX + key], args=[repr(rate), repr(capacity)])
        return int(wait_ms) / 1000
    return _local.take(key, rate, capacity)


def channel_key(channel) -> str:
    return f"channel:{channel.pk}"


@lru_cache(maxsize=4)
def _script(url: str):
    import redis

    return redis.Redis.from_url(url).register_script(_TAKE)


class _LocalBuckets:
    """One process only: the embedded default, where there is no Redis."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, rate: float, capacity: float) -> float:
        with self._lock:
            now = time.monotonic()
            tokens, updated = self._state.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - updated) * rate)
            if tokens >= 1:
                self._state[key] = (tokens - 1, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1 - tokens) / rate


_local = _LocalBuckets()
