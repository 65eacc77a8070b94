"""Benchmark: export a million pledges as CSV from a real gunicorn worker, and its memory.

Not collected by pytest (the name does not start with test_). Run it from the project root:

    python -m tests.bench_export            # 1,000,000 pledges
    python -m tests.bench_export --rows 200000

It makes a SQLite file through the migrations and fills it with bulk inserts. Then it starts
gunicorn as the README's deploy line does (one worker, so there is one process to watch),
signs in over HTTP and downloads /admin/pledges.csv as a browser would, reading the streamed
body as it arrives. It prints rows per second and the worker's peak memory (RSS) above what
it used just before the download began. A download cut off by the server (a worker timeout,
say) fails the run: every row must arrive.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask_migrate import upgrade
from sqlalchemy import insert

from microsite import auth, create_app
from microsite.models import Pledge, db
from tests.admin_fixtures import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.bench_pages import ROOT, TOKEN, free_port
from tests.conftest import base_config

# The README's deploy line, but one worker: threads, so a long download is not cut off.
GUNICORN = ["--workers", "1", "--threads", "4"]

BATCH = 50_000
COUNTRIES = ["IT", "PL", "UA", "FR", "DE", "IE", "ES", "PT", "AL", None]
RHYTHMS = ["daily", "weekly", "feb8"]
NAMES = ["Maria Rossi", "Łukasz Żółć", "Олена Коваленко", "Zoë Brontë", "=Formula Person"]


def rss_kb(pid: int) -> int:
    """A process's resident memory now, from /proc (Linux)."""
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


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


def start_server(url: str, port: int) -> tuple[subprocess.Popen, int]:
    """gunicorn serving the site on this database; returns it and its worker's pid."""
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "benchmark-only-" + "0" * 32}
    server = subprocess.Popen(
        [Path(sys.executable).parent / "gunicorn", *GUNICORN, "--bind", f"127.0.0.1:{port}",
         "--log-level", "warning", "app:app"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).close()
            break
        except OSError:
            time.sleep(0.1)
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return server, int(children[0])


def download(port: int, worker_pid: int) -> dict[str, float]:
    """Sign in, then stream the export, sampling the worker's memory all the while."""
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    page = opener.open(f"{base}/admin/login").read()
    form = {"csrf_token": TOKEN.search(page).group(1).decode(), "email": ADMIN_EMAIL,
            "password": ADMIN_PASSWORD}  # fmt: skip
    signed_in = opener.open(f"{base}/admin/login", urllib.parse.urlencode(form).encode())
    assert signed_in.url == f"{base}/admin/", signed_in.url
    opener.open(f"{base}/admin/pledges").read()  # warm up templates, queries, the connection

    baseline = rss_kb(worker_pid)
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kb(worker_pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    size = lines = 0
    with opener.open(f"{base}/admin/pledges.csv", timeout=60) as response:
        last = b""
        while chunk := response.read(64 * 1024):
            size += len(chunk)
            lines += (last + chunk[:1] == b"\r\n") + chunk.count(b"\r\n")  # across reads too
            last = chunk[-1:]
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    peak = max(peak, rss_kb(worker_pid))
    return {"seconds": seconds, "bytes": size, "lines": lines, "baseline": baseline, "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        instance = Path(tmp)
        url = f"sqlite:///{instance / 'bench.db'}"
        fill_seconds = fill(url, instance, args.rows)
        print(f"filled {args.rows:,} pledges in {fill_seconds:.1f} s")

        port = free_port()
        server, worker_pid = start_server(url, port)
        try:
            outcome = download(port, worker_pid)
        finally:
            server.terminate()
            server.wait(timeout=10)

    rows = outcome["lines"] - 1  # less the header
    assert rows == args.rows, f"{rows:,} of {args.rows:,} rows arrived"
    print(
        f"exported {rows:,} rows ({outcome['bytes'] / 1e6:.1f} MB of CSV) "
        f"in {outcome['seconds']:.1f} s: {rows / outcome['seconds']:,.0f} rows/second"
    )
    print(
        f"gunicorn worker memory (RSS): {outcome['baseline'] / 1024:.1f} MB before the "
        f"download, peak {outcome['peak'] / 1024:.1f} MB during it: "
        f"+{(outcome['peak'] - outcome['baseline']) / 1024:.1f} MB"
    )


if __name__ == "__main__":
    main()
