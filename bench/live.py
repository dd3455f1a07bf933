"""Benchmark 4: live updates.

Authenticated websocket agents (session cookies, the inbox page's socket `/ws/inbox/`) on one
organization; signed inbound webhooks at a fixed rate through the shipped server, processed by
a Celery worker, published through the channel layer (Redis) and rendered per agent by the
consumer. Latency is from the webhook leaving the load generator to the frame that carries the
message reaching each agent; a frame never received is lost. Frames carry the rendered rows, so
a browser needs no follow-up request per event (counted: requests the frames would trigger).
Reference: raw Redis PUBLISH to as many asyncio subscribers, in the same run.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time

from bench import data, loadgen
from bench.common import HOST, RunEnv, latency_summary, server_start, worker_start

# After the last webhook: wait while frames still arrive; a frame is lost when nothing has
# arrived for QUIET_S (or after SETTLE_MAX_S in all).
QUIET_S = 10.0
SETTLE_MAX_S = 180.0
GOALS = {"p50_ms": 50, "p99_ms": 250}


def _setup(agents: int):
    from guardian.shortcuts import assign_perm

    from apps.providers.selectors import VIEW_CHANNEL

    org = data.organization_create("Bench live")
    channel = data.channel_create(org)
    cookies = []
    for i in range(agents):
        user = data.agent_create(org, f"live-{org.pk}-{i}", role="agent")
        assign_perm(VIEW_CHANNEL, user, channel)
        cookies.append(data.session_cookie(user, org))
    return org, channel, cookies


async def _agent(url: str, cookie: str, origin: str, pattern: re.Pattern, arrivals: dict, ready: asyncio.Event,
                 stop: asyncio.Event, counters: dict):
    import websockets

    async with websockets.connect(url, additional_headers={"Cookie": f"sessionid={cookie}", "Origin": origin},
                                  open_timeout=30, max_size=None) as ws:
        counters["connected"] += 1
        if counters["connected"] == counters["agents"]:
            ready.set()
        while not stop.is_set():
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except asyncio.TimeoutError:
                continue
            now = time.time()
            counters["frames"] += 1
            # An element that loads itself, or a resync hint (a fragment too large to carry), costs the
            # browser a request; rendered rows need none.
            counters["follow_ups"] += frame.count("hx-trigger=\"load") + frame.count("data-resync=")
            for marker in set(pattern.findall(frame)):
                arrivals.setdefault(int(marker), now)


async def _scenario(base: str, ws_url: str, channel, cookies: list[str], *, webhooks: int, rate: float, run: str):
    pattern = re.compile(rf"live-{run}-(\d+)\b")
    per_agent = [dict() for _ in cookies]
    sent_at: dict[int, float] = {}
    counters = {"connected": 0, "agents": len(cookies), "frames": 0, "follow_ups": 0}
    ready, stop = asyncio.Event(), asyncio.Event()
    agents = [asyncio.create_task(_agent(ws_url, cookie, base, pattern, per_agent[i], ready, stop, counters))
              for i, cookie in enumerate(cookies)]
    try:
        await asyncio.wait_for(ready.wait(), timeout=60)
    except asyncio.TimeoutError:
        for task in agents:
            if task.done() and task.exception():
                raise task.exception()
        raise RuntimeError(f"only {counters['connected']} of {len(cookies)} agents connected")

    def requests():
        i = 0
        while True:
            yield data.inbound_webhook(channel, data.sid(run + "l", i), sender=f"+6012{1_000_000 + i % 300}",
                                       text=f"live-{run}-{i} hello")
            i += 1

    def on_sent(req, at):
        sent_at[len(sent_at)] = at

    result = await loadgen.open_loop(base, requests(), connections=8, rate=rate, duration=webhooks / rate,
                                     on_sent=on_sent)
    deadline = time.time() + SETTLE_MAX_S
    received, quiet_since = -1, time.time()
    while time.time() < deadline and any(len(a) < len(sent_at) for a in per_agent):
        now_received = sum(len(a) for a in per_agent)
        if now_received != received:
            received, quiet_since = now_received, time.time()
        elif time.time() - quiet_since > QUIET_S:
            break
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*agents, return_exceptions=True)
    latencies = [arrived - sent_at[i] for arrivals in per_agent for i, arrived in arrivals.items() if i in sent_at]
    expected = len(sent_at) * len(cookies)
    return {
        "webhook_statuses": result.statuses,
        "latency": latency_summary(latencies),
        "frames_expected": expected,
        "frames_lost": expected - len(latencies),
        "frames_total": counters["frames"],
        "follow_up_requests_per_event_per_browser": round(counters["follow_ups"] / expected, 3) if expected else None,
        "_arrivals": per_agent,
        "_sent_at": sent_at,
    }


def _split(run_id: str, arrivals: list[dict], sent_at: dict) -> dict:
    """Where the time goes: webhook → message committed by the worker (the ingest pipeline) and
    message committed → frame at the agent (the live path: publish, fan-out, socket)."""
    from apps.conversations.models import Message

    committed = {}
    for text, created_at in Message.objects.filter(text__startswith=f"live-{run_id}-").values_list("text", "created_at"):
        marker = text.split()[0].rsplit("-", 1)[-1]
        if marker.isdigit():
            committed[int(marker)] = created_at.timestamp()
    processing = [committed[i] - sent for i, sent in sent_at.items() if i in committed]
    live = [arrived - committed[i] for agent in arrivals for i, arrived in agent.items() if i in committed]
    return {"webhook_to_commit": latency_summary(processing), "commit_to_frame": latency_summary(live)}


async def _redis_reference(redis_url: str, *, subscribers: int, messages: int, rate: float) -> dict:
    import redis.asyncio as aioredis

    channel = f"bench-ref-{secrets.token_hex(3)}"
    arrivals: list[list[float]] = [[] for _ in range(subscribers)]
    latencies: list[float] = []
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(subscribers)]
    pubsubs = []
    for client in clients:
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        pubsubs.append(pubsub)

    async def listen(i: int, pubsub):
        while len(arrivals[i]) < messages:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                if stop.is_set():
                    return
                continue
            now = time.time()
            arrivals[i].append(now)
            latencies.append(now - float(message["data"]))

    stop = asyncio.Event()
    listeners = [asyncio.create_task(listen(i, p)) for i, p in enumerate(pubsubs)]
    publisher = aioredis.Redis.from_url(redis_url)
    start = time.perf_counter()
    for i in range(messages):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await publisher.publish(channel, repr(time.time()))
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*listeners, return_exceptions=True)
    for pubsub in pubsubs:
        await pubsub.aclose()
    for client in clients + [publisher]:
        await client.aclose()
    received = sum(len(a) for a in arrivals)
    return {"latency": latency_summary(latencies), "frames_lost": subscribers * messages - received}


def run(env: RunEnv, *, agents: int, webhooks: int, rate: float, server: str = "uvicorn") -> dict:
    org, channel, cookies = _setup(agents)
    run_id = secrets.token_hex(3)
    proc = server_start(server, env)
    worker = None
    try:
        worker = worker_start(env, concurrency=4)
        base = f"http://{HOST}:{proc.port}"
        parley = loadgen.run(_scenario(base, f"ws://{HOST}:{proc.port}/ws/inbox/", channel, cookies,
                                       webhooks=webhooks, rate=rate, run=run_id))
    finally:
        if worker is not None:
            worker.stop()
        proc.stop()
    parley.update(_split(run_id, parley.pop("_arrivals"), parley.pop("_sent_at")))
    reference = loadgen.run(_redis_reference(env.redis_url, subscribers=agents, messages=webhooks, rate=rate))
    out = {"agents": agents, "webhooks": webhooks, "rate": rate, "server": server, **parley, "reference": reference}
    out["p50_vs_reference"] = (
        round(parley["latency"]["p50_ms"] / reference["latency"]["p50_ms"], 1)
        if parley["latency"]["p50_ms"] and reference["latency"]["p50_ms"] else None
    )
    bad = {s: n for s, n in parley["webhook_statuses"].items() if s not in (200, 204)}
    out["broken"] = []
    if bad:
        out["broken"].append(f"webhooks answered {bad}")
    if parley["frames_lost"]:
        out["broken"].append(f"{parley['frames_lost']} of {parley['frames_expected']} frames lost")
    return out
