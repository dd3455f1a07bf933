"""The benchmark harness measures what it claims: its signed webhooks are the real thing (the
webhook view accepts and records them once), its duplicate stream repeats each id as promised,
its seeder lands on the exact sizes, and its statistics are right."""

import itertools

import pytest
from django.test import Client

from apps.conversations.models import Conversation, Message
from apps.providers.models import InboundEvent
from bench import common, data, seed
from bench.loadgen import Request


def _post(client: Client, request: Request):
    return client.post(request.path, data=request.body, content_type="application/x-www-form-urlencoded",
                       HTTP_X_TWILIO_SIGNATURE=request.headers["X-Twilio-Signature"])


@pytest.fixture
def bench_channel(acme, settings):
    settings.PUBLIC_BASE_URL = common.PUBLIC_BASE_URL
    return data.channel_create(acme)


def test_bench_webhooks_are_accepted_by_the_real_view_and_recorded_once(bench_channel):
    client = Client()
    stream = list(itertools.islice(data.webhook_stream(bench_channel, "t1", copies=3), 30))
    answers = [_post(client, request).status_code for request in stream]
    assert set(answers) <= {200, 204}
    keys = {request.key for request in stream}
    stored = list(InboundEvent.objects.filter(destination=str(bench_channel.uuid)).values_list("event_id", flat=True))
    assert sorted(stored) == sorted(keys)
    assert {InboundEvent.objects.get(event_id=k).kind for k in keys} == {"message", "status"}


def test_a_tampered_bench_webhook_is_refused(bench_channel):
    request = next(data.webhook_stream(bench_channel, "t2"))
    tampered = Request(request.path, request.body.replace(b"Body=", b"Body=x"), request.headers, request.key)
    assert _post(Client(), tampered).status_code == 403
    assert not InboundEvent.objects.exists()


def test_the_duplicate_stream_sends_each_id_ten_times_half_of_them_back_to_back(bench_channel):
    stream = list(itertools.islice(data.webhook_stream(bench_channel, "t3", copies=10), 3000))
    counts = {}
    for request in stream:
        counts[request.key] = counts.get(request.key, 0) + 1
    first = stream[0].key
    assert [r.key for r in stream[:5]] == [first] * 5  # racing copies
    assert counts[first] == 10
    assert max(counts.values()) <= 10


@pytest.mark.skipif("sqlite" in __import__("django.conf").conf.settings.DATABASES["default"]["ENGINE"],
                    reason="the seeder uses PostgreSQL's COPY")
def test_seeder_lands_on_exact_sizes_with_long_threads(db):
    seeded = seed.seed(conversations=40, messages=900, long_threads=2, long_length=200, label="test")
    org = seeded.organization
    assert Conversation.objects.filter(organization=org).count() == 40
    assert Message.objects.filter(organization=org).count() == 900
    assert [Message.objects.filter(conversation_id=pk).count() for pk in seeded.long_ids] == [200, 200]
    again = seed.seed(conversations=40, messages=900, long_threads=2, long_length=200, label="test")
    assert again.reused and again.organization.pk == org.pk


def test_percentiles_and_summary():
    values = [i / 1000 for i in range(1, 1001)]  # 1 … 1000 ms
    summary = common.latency_summary(values)
    assert summary["count"] == 1000
    assert summary["p50_ms"] == pytest.approx(500.5, abs=0.01)
    assert summary["p99_ms"] == pytest.approx(990.01, abs=0.01)
    assert summary["max_ms"] == 1000
    assert common.percentile([], 50) is None
    assert common.ratio(1.0, 0) is None


def test_the_cost_meter_counts_a_process_group_s_cpu_and_not_its_idle():
    import subprocess
    import sys

    from bench import costs

    # A process that, when told, burns 0.3 s of CPU (its own clock, whatever the machine's load),
    # says so, and then sleeps.
    script = (
        "import sys, time\nprint('ready', flush=True)\nsys.stdin.readline()\nstart = time.process_time()\n"
        "while time.process_time() - start < 0.3: pass\nprint('done', flush=True)\ntime.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        meter = costs.Meter(child=child.pid)
        meter.calibrate(0.3)  # asleep, waiting for its cue: no idle cost
        assert meter.idle_per_s["child"] < 50

        def burn():
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "done"

        cpu, _ = meter.measure(burn)
        assert 250 <= cpu["child"] <= 450
    finally:
        child.kill()
        child.wait()


def test_the_profile_summary_names_the_functions_with_their_share(tmp_path):
    from bench import costs

    raw = tmp_path / "profile.txt"
    raw.write_text("main (a.py:1);render (t.py:9) 30\nmain (a.py:1);query (q.py:4) 10\nmain (a.py:1);select (s.py:2) 50\n")
    assert costs._top_functions(str(raw)) == [{"function": "render (t.py:9)", "share": 0.75},
                                               {"function": "query (q.py:4)", "share": 0.25}]
