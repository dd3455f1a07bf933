"""The per-sender token bucket."""

import uuid

import pytest

from apps.providers import ratelimit


@pytest.fixture(params=["redis", "local"])
def backend(request, settings):
    if request.param == "redis":
        if not settings.REDIS_URL:
            pytest.skip("REDIS_URL is not set (CI always sets it)")
    else:
        settings.REDIS_URL = ""
    return request.param


def test_hands_out_at_most_rate_tokens_at_once(backend):
    key = f"test:{uuid.uuid4().hex}"
    results = [ratelimit.take(key, rate=5) for _ in range(20)]
    granted = [wait for wait in results if wait == 0]
    assert len(granted) == 5
    assert all(0 < wait <= 0.2 + 0.01 for wait in results[5:])


def test_each_channel_has_its_own_bucket(backend):
    first, second = f"test:{uuid.uuid4().hex}", f"test:{uuid.uuid4().hex}"
    assert [ratelimit.take(first, rate=2) for _ in range(3)].count(0) == 2
    assert [ratelimit.take(second, rate=2) for _ in range(3)].count(0) == 2


def test_rate_defaults_to_the_setting(backend, settings):
    settings.SEND_RATE_PER_SECOND = 3
    key = f"test:{uuid.uuid4().hex}"
    assert [ratelimit.take(key) for _ in range(10)].count(0) == 3


def test_redis_bucket_is_shared_between_clients(settings):
    """Two processes share one bucket: a second client sees the tokens the first one took."""
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set (CI always sets it)")
    import redis

    key = f"test:{uuid.uuid4().hex}"
    other = redis.Redis.from_url(settings.REDIS_URL).register_script(ratelimit._TAKE)
    assert ratelimit.take(key, rate=2) == 0
    assert other(keys=[ratelimit.KEY_PREFIX + key], args=["2.0", "2.0"]) == 0
    assert ratelimit.take(key, rate=2) > 0
