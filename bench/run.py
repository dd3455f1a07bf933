"""The benchmark runner: `python -m bench.run --smoke` (about a minute, CI) or `--full`.

Creates and migrates its own database (BENCH_DATABASE, default `parley_bench`), starts a private
redis-server, the fake Twilio server, app servers and Celery workers as it needs them, and stops
them all. Writes docs/benchmarks.json (and, with --full, docs/benchmarks.md and the charts).
Exits 1 when an invariant breaks (a duplicate row, a duplicate send, a lost frame); a missed
ratio or latency goal is reported, never fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from datetime import UTC, datetime

from bench.common import ROOT, InvariantBroken, RunEnv, database_ensure, fingerprint, pg_base_url, redis_start

PROFILES = {
    "smoke": {
        "ingest": {"duration": 1.5, "servers": ["daphne", "uvicorn", "gunicorn"], "sustained_duration": 2.0,
                   "sustained_steps": 2},
        "outbound": {"messages": 150, "replies": 3},
        "pages": {"conversations": 5_000, "messages": 50_000, "long_threads": 2, "long_length": 5_000, "repeat": 5},
        "live": {"agents": 10, "webhooks": 50, "rate": 20.0},
        "costs": {"events": 40, "sockets": 10, "rate": 20.0},
    },
    "full": {
        "ingest": {"duration": 10.0, "servers": ["daphne", "uvicorn", "gunicorn"], "sustained_duration": 8.0},
        "outbound": {"messages": 10_000, "replies": 20},
        "pages": {"conversations": 100_000, "messages": 2_000_000, "long_threads": 4, "long_length": 5_000,
                  "repeat": 30},
        "live": {"agents": 100, "webhooks": 1_000, "rate": 20.0},
        "costs": {"events": 400, "sockets": 100, "rate": 20.0},
    },
}
ALL = ("ingest", "outbound", "pages", "live", "costs")
SHIPPED_SERVER = "gunicorn"  # the Procfile's web server: gunicorn with uvicorn workers


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--smoke", action="store_true", help="small N, about a minute; checks invariants")
    mode.add_argument("--full", action="store_true", help="the issue's sizes; writes docs/benchmarks.md")
    mode.add_argument("--report", metavar="JSON", help="only rewrite docs/benchmarks.md from a results file")
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated subset of " + ",".join(ALL))
    parser.add_argument("--fresh", action="store_true", help="drop and recreate the bench database first")
    parser.add_argument("--out", default="", help="where to write the JSON (default docs/benchmarks[-smoke].json)")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.report:
        from bench import report

        with open(args.report) as fh:
            results = json.load(fh)
        report.write_docs(results, ROOT / "docs")
        print(report.table(results))
        return 0
    profile_name = "smoke" if args.smoke else "full"
    profile = PROFILES[profile_name]
    only = [name.strip() for name in args.only.split(",") if name.strip()]

    redis = redis_start()
    env = RunEnv(database=os.environ.get("BENCH_DATABASE", "parley_bench"), pg_url=pg_base_url(),
                 redis_url=f"redis://127.0.0.1:{redis.port}/10")
    results: dict = {"profile": profile_name, "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    broken: list[str] = []
    try:
        database_ensure(env, fresh=args.fresh)
        env.apply()
        import django

        django.setup()
        results["machine"] = fingerprint(env)
        for name in only:
            started = time.monotonic()
            print(f"bench: {name} …", flush=True)
            try:
                kwargs = dict(profile[name])
                if name == "live":
                    # The live benchmark runs on the server the ingest benchmark found best.
                    kwargs["server"] = (results.get("ingest") or {}).get("best_server") or SHIPPED_SERVER
                results[name] = _module(name).run(env, **kwargs)
                broken += [f"{name}: {problem}" for problem in results[name].get("broken", [])]
            except InvariantBroken as exc:
                broken.append(f"{name}: {exc}")
                results[name] = {"invariant_broken": str(exc)}
            except Exception as exc:  # noqa: BLE001 - report and go on to the next benchmark
                traceback.print_exc()
                broken.append(f"{name}: {type(exc).__name__}: {exc}")
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            results.setdefault("timings_s", {})[name] = round(time.monotonic() - started, 1)
            _redis_flush(env)
    finally:
        redis.stop()
    results["machine"] = {**results.get("machine", {}), "loadavg_end": os.getloadavg()}
    results["invariants_broken"] = broken

    from bench import report

    out = args.out or str(ROOT / "docs" / ("benchmarks.json" if args.full else "benchmarks-smoke.json"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(results, fh, indent=2, default=str)
    print(report.table(results))
    if args.full and not args.no_docs:
        report.write_docs(results, ROOT / "docs")
    if broken:
        print("bench: INVARIANTS BROKEN:\n  " + "\n  ".join(broken), file=sys.stderr)
        return 1
    return 0


def _module(name: str):
    import importlib

    return importlib.import_module(f"bench.{name}")


def _redis_flush(env: RunEnv) -> None:
    # Our private redis-server: tasks queued by one benchmark must not run in the next.
    import redis

    redis.Redis.from_url(env.redis_url).flushall()


if __name__ == "__main__":
    sys.exit(main())
