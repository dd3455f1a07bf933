"""Benchmark 3: pages at scale.

Seeds (COPY) an organization with many conversations and messages, then times the inbox list
(page and htmx fragment, each view and filter) and a conversation (a normal one and a
5,000-message thread) in-process through Django's full request path: server time, without the
network. For each: p50/p95, the number of queries, the same SQL run raw with psycopg (the
reference), and EXPLAIN of every query on messages (no sequential scan allowed). The query
counts are compared with a small organization: they must not grow with the data.
"""

from __future__ import annotations

import re
import time

from bench import seed as seeder
from bench.common import InvariantBroken, RunEnv, latency_summary, percentile, ratio

SKIP_RAW = re.compile(r"^\s*(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT|BEGIN|COMMIT)", re.I)
FRAGMENT = {"HTTP_HX_REQUEST": "true"}


def _cases(seeded) -> list[tuple[str, str, dict]]:
    channel = seeded.channels[0].pk
    long_id, normal_id = seeded.long_ids[0], seeded.normal_id
    cases = []
    for label, query in (("all", ""), ("mine", "?view=mine"), ("unassigned", "?view=unassigned"),
                         ("status=open", "?status=open"), (f"channel", f"?channel={channel}")):
        cases.append((f"list {label} (page)", "/" + query, {}))
        cases.append((f"list {label} (fragment)", "/" + query, {**FRAGMENT, "HTTP_HX_TARGET": "conversation-list"}))
    cases += [
        ("conversation normal (page)", f"/conversations/{normal_id}/", {}),
        ("conversation normal (fragment)", f"/conversations/{normal_id}/",
         {**FRAGMENT, "HTTP_HX_TARGET": "workspace"}),
        ("conversation 5,000 messages (page)", f"/conversations/{long_id}/", {}),
        ("conversation 5,000 messages (fragment)", f"/conversations/{long_id}/",
         {**FRAGMENT, "HTTP_HX_TARGET": "workspace"}),
    ]
    return cases


def _client(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def _captured(client, path: str, headers: dict):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path, **headers)
    if response.status_code != 200:
        raise InvariantBroken(f"pages: {path} answered {response.status_code}")
    return [q["sql"] for q in ctx.captured_queries]


def _raw_times(env: RunEnv, queries: list[str], repeat: int) -> list[float]:
    import psycopg

    statements = [q for q in queries if not SKIP_RAW.match(q)]
    times = []
    with psycopg.connect(env.database_url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        for _ in range(repeat + 2):
            started = time.perf_counter()
            for sql in statements:
                with conn.cursor() as cur:
                    cur.execute(sql.encode(), prepare=False)
                    if cur.description:
                        cur.fetchall()
            times.append(time.perf_counter() - started)
    return times[2:]


def _explain(queries: list[str]) -> list[dict]:
    from django.db import connection

    plans = []
    for sql in queries:
        if "conversations_message" not in sql or not sql.lstrip().upper().startswith("SELECT"):
            continue
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        plans.append({"sql": sql[:400], "plan": plan, "seq_scan": "Seq Scan on conversations_message" in plan})
    return plans


def _measure(env: RunEnv, seeded, repeat: int, *, explain: bool) -> list[dict]:
    client = _client(seeded.owner)
    results = []
    for label, path, headers in _cases(seeded):
        for _ in range(2):  # warm caches and the template loader
            client.get(path, **headers)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(path, **headers)
            times.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise InvariantBroken(f"pages: {label} answered {response.status_code}")
        queries = _captured(client, path, headers)
        raw = _raw_times(env, queries, repeat)
        row = {
            "case": label,
            "queries": len(queries),
            **latency_summary(times),
            "raw_sql_p50_ms": round(percentile(raw, 50) * 1000, 2),
            "raw_sql_p95_ms": round(percentile(raw, 95) * 1000, 2),
        }
        row["vs_raw_p95"] = ratio(row["p95_ms"], row["raw_sql_p95_ms"])
        if explain:
            row["explain"] = _explain(queries)
        results.append(row)
    return results


def run(env: RunEnv, *, conversations: int, messages: int, long_threads: int, long_length: int, repeat: int) -> dict:
    small = seeder.seed(conversations=120, messages=1_200 + 2 * 300, long_threads=2, long_length=300, label="small")
    big = seeder.seed(conversations=conversations, messages=messages, long_threads=long_threads,
                      long_length=long_length)
    rows = _measure(env, big, repeat, explain=True)
    small_rows = {r["case"].replace("5,000", "long"): r["queries"] for r in _measure(env, small, 3, explain=False)}
    growth = {}
    for row in rows:
        key = row["case"].replace("5,000", "long")
        row["queries_small_org"] = small_rows.get(key)
        if row["queries_small_org"] != row["queries"]:
            growth[row["case"]] = (row["queries_small_org"], row["queries"])
    seq_scans = [(row["case"], p["sql"]) for row in rows for p in row.get("explain", []) if p["seq_scan"]]
    out = {
        "conversations": conversations,
        "messages": messages,
        "long_threads": long_threads,
        "long_length": long_length,
        "seed_seconds": round(big.seconds, 1),
        "seed_reused": big.reused,
        "repeat": repeat,
        "cases": rows,
        "query_count_growth": growth,
        "seq_scans_on_messages": seq_scans,
    }
    if seq_scans:
        out["broken"] = [f"sequential scan on conversations_message in {case}" for case, _ in seq_scans]
    return out
