"""Benchmark 5: the cost of one event, in CPU milliseconds per process.

For a plain text message, an inbound message with one image, a status callback and an agent's
send: the CPU the web processes spend answering (the webhook, the API call), the CPU the worker
spends (processing, rendering the live fragments once, sending), and the CPU the web processes
spend per connected socket on each event's frame (fan-out). Read from the kernel's counters
(utime + stime of every process in the server's and the worker's process group), minus what the
same processes burn idle over the same time: the figures hold on a noisy machine in a way wall
time does not. A py-spy profile of the worker names the top costs of a text message.

Reference, in the same run: the bare Django view's CPU per request on the same server (what
the ASGI stack costs before any of our code).
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from bench import data, loadgen
from bench.common import HOST, RunEnv, server_start, worker_start

TICKS = os.sysconf("SC_CLK_TCK")
GOALS = {"worker_text_ms": 5.0, "fanout_per_socket_ms": 0.05, "web_webhook_ms": 3.0}


def process_group_cpu_ms(pgid: int) -> float:
    """CPU (user + system) of every live process whose process group is `pgid`, in ms."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * 1000 / TICKS


class Meter:
    """CPU of some process groups over a stretch of work, less their idle rate."""

    def __init__(self, **groups: int):
        self.groups = groups
        self.idle_per_s = {name: 0.0 for name in groups}

    def calibrate(self, seconds: float = 3.0) -> None:
        before = self._read()
        time.sleep(seconds)
        after = self._read()
        self.idle_per_s = {name: max(0.0, (after[name] - before[name]) / seconds) for name in self.groups}

    def _read(self) -> dict[str, float]:
        return {name: process_group_cpu_ms(pgid) for name, pgid in self.groups.items()}

    def measure(self, work) -> tuple[dict[str, float], float]:
        """Run `work()`; returns (CPU ms by group beyond idle, elapsed seconds)."""
        before, started = self._read(), time.monotonic()
        work()
        after, elapsed = self._read(), time.monotonic() - started
        return {name: max(0.0, after[name] - before[name] - self.idle_per_s[name] * elapsed)
                for name in self.groups}, elapsed


def _wait(predicate, timeout: float = 120.0, quiet: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            time.sleep(quiet)  # let the worker finish what follows the commit (publishing)
            return
        time.sleep(0.05)
    raise RuntimeError("bench costs: the work did not finish in time")


def _setup(sockets: int):
    from guardian.shortcuts import assign_perm

    from apps.accounts.models import Membership
    from apps.accounts.services import api_token_create
    from apps.providers.selectors import VIEW_CHANNEL

    org = data.organization_create("Bench costs")
    channel = data.channel_create(org)
    owner = data.agent_create(org, f"costs-owner-{org.pk}", role="owner")
    _, key = api_token_create(membership=Membership.objects.get(user=owner, organization=org), name="bench")
    cookies = []
    for i in range(sockets):
        user = data.agent_create(org, f"costs-{org.pk}-{i}", role="agent")
        assign_perm(VIEW_CHANNEL, user, channel)
        cookies.append(data.session_cookie(user, org))
    return org, channel, key, cookies


def _post_all(base: str, requests: list, *, rate: float) -> dict:
    async def go():
        return await loadgen.open_loop(base, iter(requests), connections=4, rate=rate, duration=len(requests) / rate)

    return loadgen.run(go()).statuses


async def _sockets(ws_url: str, origin: str, cookies: list[str], stop: asyncio.Event, ready: asyncio.Event,
                   counts: collections.Counter):
    import websockets

    async def one(cookie):
        async with websockets.connect(ws_url, additional_headers={"Cookie": f"sessionid={cookie}", "Origin": origin},
                                      open_timeout=30, max_size=None) as ws:
            counts["connected"] += 1
            if counts["connected"] == len(cookies):
                ready.set()
            while not stop.is_set():
                try:
                    await asyncio.wait_for(ws.recv(), timeout=0.5)
                    counts["frames"] += 1
                except asyncio.TimeoutError:
                    continue

    await asyncio.gather(*(one(cookie) for cookie in cookies))


class SocketsOpen:
    """`sockets` agents connected to the inbox socket in a background thread while a block runs."""

    def __init__(self, ws_url: str, origin: str, cookies: list[str]):
        self.ws_url, self.origin, self.cookies = ws_url, origin, cookies
        self.counts: collections.Counter = collections.Counter()

    def __enter__(self):
        import threading

        self.loop = loadgen._new_loop()
        self.stop, self.ready = asyncio.Event(), asyncio.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(_sockets(self.ws_url, self.origin, self.cookies, self.stop, self.ready,
                                                  self.counts))

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while self.counts["connected"] < len(self.cookies) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.counts["connected"] < len(self.cookies):
            raise RuntimeError(f"bench costs: only {self.counts['connected']} sockets connected")
        time.sleep(1.0)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
        self.loop.close()


def _messages_with(prefix: str) -> int:
    from apps.conversations.models import Message

    return Message.objects.filter(text__startswith=prefix).count()


def _texts(channel, run: str, n: int, *, media_url: str = "") -> list:
    return [
        data.inbound_webhook(channel, data.sid(run, i), sender=f"+6013{1_000_000 + i:07d}",
                             text=f"{run} {i} " + ("photo" if media_url else "hello there"), media_url=media_url)
        for i in range(n)
    ]


def _profile(pid: int, seconds: float, out_dir: str) -> list[dict]:
    """Start py-spy on a process and its children for `seconds` (collapsed stacks to a file)."""
    local = os.path.join(os.path.dirname(sys.executable), "py-spy")
    py_spy = local if os.path.exists(local) else shutil.which("py-spy")
    if py_spy is None:
        return []
    raw = os.path.join(out_dir, "worker.txt")
    proc = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--subprocesses", "--format", "raw", "--rate", "200",
                             "--duration", str(int(seconds)), "--output", raw, "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [{"py_spy": proc, "raw": raw}]


def _top_functions(raw: str, limit: int = 12) -> list[dict]:
    """Collapsed stacks → the functions where the samples were (own time), with shares."""
    own: collections.Counter = collections.Counter()
    total = 0
    with open(raw) as fh:
        for line in fh:
            stack, _, count = line.rstrip().rpartition(" ")
            if not count.isdigit():
                continue
            frames = stack.split(";")
            leaf = frames[-1]
            # Idle waiting is not a cost of the event.
            if re.search(r"\b(select|poll|epoll|wait|sleep|_recv|recv_into|accept)\b", leaf):
                continue
            own[leaf] += int(count)
            total += int(count)
    return [{"function": name, "share": round(count / total, 3)} for name, count in own.most_common(limit)] if total else []


def run(env: RunEnv, *, events: int, sockets: int, rate: float, server: str = "gunicorn") -> dict:
    from bench import outbound

    fake = outbound.fake_start()
    env.twilio_base = fake.base_url
    media_url = fake.add_media(data.ACCOUNT_SID, b"\xff\xd8\xff" + b"x" * 20_000, "image/jpeg")
    org, channel, key, cookies = _setup(sockets)
    proc = server_start(server, env)
    worker = None
    results: dict = {"events": events, "sockets": sockets, "rate": rate, "server": server}
    try:
        worker = worker_start(env, concurrency=4)
        base = f"http://{HOST}:{proc.port}"
        meter = Meter(web=proc.pid, worker=worker.pid)
        meter.calibrate()
        results["idle_ms_per_s"] = {name: round(value, 2) for name, value in meter.idle_per_s.items()}

        def events_of(kind: str, make, done) -> dict:
            run_id = f"{kind}{os.getpid() % 1000}{int(time.time()) % 100000}"
            requests, finished = make(run_id)
            cpu, elapsed = meter.measure(lambda: (_post_all(base, requests, rate=rate), _wait(lambda: done(finished))))
            return {name: round(ms / len(requests), 3) for name, ms in cpu.items()} | {"elapsed_s": round(elapsed, 1)}

        def text_events(run_id):
            return _texts(channel, run_id, events), run_id

        def image_events(run_id):
            return _texts(channel, run_id, events, media_url=media_url), run_id

        def texts_done(run_id):
            return _messages_with(run_id) >= events

        # Warm every process (imports, connections, template caches) before anything is measured.
        events_of("w", text_events, texts_done)
        results["text"] = events_of("t", text_events, texts_done)
        results["image"] = events_of("i", image_events, texts_done)
        results["status"] = _statuses(meter, base, channel, events, rate)
        results["send"] = _sends(meter, base, org, channel, key, events, rate)
        results["bare_view"] = _bare(meter, base, events, rate)

        # Fan-out alone: frames published straight to the organization's group (rendered here,
        # once, by this process) while `sockets` agents watch it: the web processes' CPU is what
        # handing one frame to one socket costs.
        with SocketsOpen(f"ws://{HOST}:{proc.port}/ws/inbox/", base, cookies) as open_sockets:
            event = _fanout_event(org, channel)
            _fanout(event, 5, rate)
            time.sleep(2.0)  # the frames of the setup and the warm-up are in
            frames_before = open_sockets.counts["frames"]
            cpu, elapsed = meter.measure(lambda: _fanout(event, events, rate))
            _wait(lambda: open_sockets.counts["frames"] - frames_before >= events * sockets, timeout=60)
            frames = open_sockets.counts["frames"] - frames_before
        results["fanout"] = {"web_ms": round(cpu["web"], 1), "frames": frames, "elapsed_s": round(elapsed, 1)}
        results["fanout_per_socket_ms"] = round(cpu["web"] / frames, 4) if frames else None
        results["frames_lost"] = max(0, events * sockets - frames)

        # Where the worker's time goes for a text message.
        with tempfile.TemporaryDirectory() as out_dir:
            profiles = _profile(worker.pid, max(5.0, events / rate + 3), out_dir)
            if profiles:
                events_of("p", text_events, texts_done)
                profiles[0]["py_spy"].wait(timeout=120)
                results["worker_profile_text"] = _top_functions(profiles[0]["raw"]) if os.path.exists(
                    profiles[0]["raw"]) else []
    finally:
        if worker is not None:
            worker.stop()
        proc.stop()
        fake.stop()
    results["goals"] = {
        "worker_text_ms": (results["text"]["worker"], GOALS["worker_text_ms"]),
        "fanout_per_socket_ms": (results["fanout_per_socket_ms"], GOALS["fanout_per_socket_ms"]),
        "web_webhook_ms": (results["text"]["web"], GOALS["web_webhook_ms"]),
    }
    results["broken"] = [f"{results['frames_lost']} fan-out frames lost"] if results.get("frames_lost") else []
    return results


def _fanout_event(org, channel):
    """A real message of the organization, and the event that announces it."""
    from apps.contacts import services as contact_services
    from apps.conversations import events
    from apps.conversations import services as conversation_services

    contact, _ = contact_services.contact_resolve(organization=org, kind="whatsapp", address="+60141234567",
                                                  phone="+60141234567")
    conversation, _ = conversation_services.conversation_open_for(contact=contact, channel=channel)
    message, _ = conversation_services.message_record_inbound(
        conversation=conversation, external_id=data.sid("fanout", 1), text="fan-out frame")
    return events.Event(events.MESSAGE_CREATED, organization_id=org.pk, channel_id=channel.pk,
                        conversation_id=conversation.pk, message_id=message.pk)


def _fanout(event, n: int, rate: float) -> None:
    """Publish `n` frames of `event` to the organization's sockets at `rate`, each rendered once."""
    from apps.inbox import broadcast

    started = time.perf_counter()
    for i in range(n):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        broadcast.publish(event)


def _statuses(meter: Meter, base: str, channel, n: int, rate: float) -> dict:
    """Delivery statuses for outbound messages we know the provider id of."""
    from django.utils import timezone

    from apps.contacts.models import Contact
    from apps.conversations.models import Conversation, Message

    run_id = f"st{int(time.time()) % 100000}"
    contact = Contact.objects.create(organization=channel.organization, name="Status", phone="+60139999999")
    conversation = Conversation.objects.create(organization=channel.organization, contact=contact, channel=channel)
    now = timezone.now()
    sids = [data.sid(run_id, i) for i in range(n)]
    Message.objects.bulk_create(
        Message(organization=channel.organization, conversation=conversation, channel=channel, direction="outbound",
                text=f"{run_id} {i}", external_id=sid, status="sent", sender_kind="agent", created_at=now, sent_at=now)
        for i, sid in enumerate(sids)
    )
    requests = [data.status_webhook(channel, sid, "delivered") for sid in sids]

    def delivered() -> bool:
        return Message.objects.filter(external_id__in=sids, status="delivered").count() >= n

    cpu, elapsed = meter.measure(lambda: (_post_all(base, requests, rate=rate), _wait(delivered)))
    return {name: round(ms / n, 3) for name, ms in cpu.items()} | {"elapsed_s": round(elapsed, 1)}


def _sends(meter: Meter, base: str, org, channel, key: str, n: int, rate: float) -> dict:
    """An agent's send through the API, delivered by the worker to the fake Twilio server."""
    import json

    from apps.contacts import services as contact_services
    from apps.conversations import services as conversation_services
    from apps.conversations.models import Message

    run_id = f"sd{int(time.time()) % 100000}"
    contact = contact_services.contact_create(organization=org, name="Sends", phone="+60138888888",
                                              whatsapp_opt_in=True)
    conversation, _ = conversation_services.conversation_open_for(contact=contact, channel=channel)
    conversation_services.message_record_inbound(conversation=conversation, external_id=data.sid(run_id, 10**6),
                                                 text="open the window")
    path = f"/api/v1/conversations/{conversation.pk}/messages/"
    requests = [
        loadgen.Request(path=path, body=json.dumps({"text": f"{run_id} {i}", "client_token": f"{run_id}-{i}"}).encode(),
                        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        for i in range(n)
    ]

    def sent() -> bool:
        return Message.objects.filter(text__startswith=run_id, status__in=["sent", "delivered", "read"]).count() >= n

    cpu, elapsed = meter.measure(lambda: (_post_all(base, requests, rate=rate), _wait(sent)))
    return {name: round(ms / n, 3) for name, ms in cpu.items()} | {"elapsed_s": round(elapsed, 1)}


def _bare(meter: Meter, base: str, n: int, rate: float) -> dict:
    requests = [loadgen.Request(path="/bench/bare/", body=b"x", headers={}) for _ in range(n)]
    cpu, elapsed = meter.measure(lambda: _post_all(base, requests, rate=rate))
    return {"web": round(cpu["web"] / n, 3), "elapsed_s": round(elapsed, 1)}
