"""Benchmark: export a million pledges as CSV through the admin web view and measure memory.

Not collected by pytest (the name does not start with test_). Run it from the project root:

    python -m tests.bench_export            # 1,000,000 pledges
    python -m tests.bench_export --rows 200000

It makes a SQLite file through the migrations, fills it with bulk inserts, then, in a fresh
worker process, signs in and downloads /admin/pledges.csv as a browser would, reading the
streamed body chunk by chunk. It prints rows per second and the worker's peak memory (RSS)
above what it used just before the download began.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask_migrate import upgrade
from sqlalchemy import insert

from microsite import auth, create_app
from microsite.models import Pledge, db
from tests.admin_fixtures import ADMIN_EMAIL, ADMIN_PASSWORD, sign_in
from tests.conftest import base_config

BATCH = 50_000
COUNTRIES = ["IT", "PL", "UA", "FR", "DE", "IE", "ES", "PT", "AL", None]
RHYTHMS = ["daily", "weekly", "feb8"]
NAMES = ["Maria Rossi", "Łukasz Żółć", "Олена Коваленко", "Zoë Brontë", "=Formula Person"]


def page_size_kb() -> int:
    return os.sysconf("SC_PAGE_SIZE") // 1024


def rss_kb() -> int:
    """The process's resident memory now, from /proc (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page_size_kb()


def fill(url: str, instance: Path, rows: int) -> float:
    """Insert `rows` pledges in batches; returns the seconds it took."""
    app = create_app(base_config(url, instance))
    started = time.perf_counter()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with app.app_context():
        upgrade()
        auth.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
        for start in range(0, rows, BATCH):
            batch = []
            for n in range(start, min(start + BATCH, rows)):
                at = base + timedelta(seconds=n)
                batch.append(
                    {
                        "name": f"{NAMES[n % len(NAMES)]} {n}",
                        "email": f"person{n}@example.org",
                        "email_key": f"person{n}@example.org",
                        "country": COUNTRIES[n % len(COUNTRIES)],
                        "rhythm": RHYTHMS[n % len(RHYTHMS)],
                        "intention": "For those who are trafficked, and for their freedom"
                        if n % 4 == 0
                        else None,
                        "show_publicly": n % 2 == 0,
                        "consent_version": "2026-11-pledge-v1",
                        "consented_at": at,
                        "created_at": at,
                    }
                )
            db.session.execute(insert(Pledge), batch)
            db.session.commit()
        db.engine.dispose()
    return time.perf_counter() - started


def worker(url: str, instance: str, results: multiprocessing.Queue) -> None:
    """A fresh process standing for one web worker: sign in, then download the export."""
    app = create_app(base_config(url, Path(instance)))
    client = app.test_client()
    assert sign_in(client).status_code == 303
    client.get("/admin/pledges")  # warm up templates, queries and the connection

    baseline = rss_kb()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    response = client.get("/admin/pledges.csv", buffered=False)
    size = 0
    lines = 0
    for chunk in response.response:
        size += len(chunk)
        lines += chunk.count(b"\r\n")
    response.close()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    peak = max(peak, rss_kb())
    results.put(
        {"seconds": seconds, "bytes": size, "lines": lines, "baseline": baseline, "peak": peak}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        instance = Path(tmp)
        url = f"sqlite:///{instance / 'bench.db'}"
        fill_seconds = fill(url, instance, args.rows)
        print(f"filled {args.rows:,} pledges in {fill_seconds:.1f} s")

        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        process = context.Process(target=worker, args=(url, str(instance), results))
        process.start()
        outcome = results.get()
        process.join()

    rows = outcome["lines"] - 1  # less the header
    assert rows == args.rows, (rows, args.rows)
    print(
        f"exported {rows:,} rows ({outcome['bytes'] / 1e6:.1f} MB of CSV) "
        f"in {outcome['seconds']:.1f} s: {rows / outcome['seconds']:,.0f} rows/second"
    )
    print(
        f"worker memory (RSS): {outcome['baseline'] / 1024:.1f} MB before the download, "
        f"peak {outcome['peak'] / 1024:.1f} MB during it: "
        f"+{(outcome['peak'] - outcome['baseline']) / 1024:.1f} MB"
    )


if __name__ == "__main__":
    main()
