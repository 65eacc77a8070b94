"""Benchmark: the public pages and pledge POSTs over real HTTP, several workers on SQLite.

Not collected by pytest. Run from the repository root:

    .venv/bin/python tests/bench_pages.py [--seconds 10] [--workers 3] [--clients 8]

It makes a fresh SQLite database through the migrations in a temporary folder, starts
gunicorn on a free local port, and prints requests per second and latency percentiles for
GET / and for POST /pledge (each POST a new person, CSRF token and all), then checks that
every accepted pledge is in the database.
"""

from __future__ import annotations

import argparse
import http.client
import http.cookies
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = re.compile(rb'name="csrf_token" type="hidden" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookie = ""

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        set_cookie = response.getheader("Set-Cookie")
        if set_cookie:
            jar = http.cookies.SimpleCookie(set_cookie)
            self.cookie = "; ".join(f"{k}={v.value}" for k, v in jar.items())
        return response.status, data


def run(port: int, seconds: float, clients: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {"GET /": [], "POST /pledge": [], "errors": []}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(n: int) -> None:
        client = Client(port)
        i = 0
        while time.monotonic() < deadline:
            start = time.perf_counter()
            status, page = client.request("GET", "/")
            took = time.perf_counter() - start
            with lock:
                timings["GET /" if status == 200 else "errors"].append(took)
            token = TOKEN.search(page)
            if not token:
                continue
            body = urllib.parse.urlencode(
                {
                    "csrf_token": token.group(1).decode(),
                    "name": f"Benchmark Person {n}-{i}",
                    "email": f"bench{n}-{i}@example.org",
                    "rhythm": "weekly",
                    "consent": "y",
                }
            )
            start = time.perf_counter()
            status, _ = client.request("POST", "/pledge", body)
            took = time.perf_counter() - start
            with lock:
                timings["POST /pledge" if status == 303 else "errors"].append(took)
            i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db_file = Path(tmp) / "bench.db"
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{db_file}",
            "SECRET_KEY": "benchmark-only-" + "0" * 32,
            "PLEDGE_RATE_LIMIT": "1000000 per second",
        }
        bin_dir = Path(sys.executable).parent
        subprocess.run(
            [bin_dir / "flask", "db", "upgrade"], cwd=ROOT, env=env, check=True,
            capture_output=True,
        )  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            [bin_dir / "gunicorn", "--workers", str(args.workers), "--threads", "4", "--bind",
             f"127.0.0.1:{port}", "--log-level", "warning", "app:app"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        try:
            for _ in range(100):
                try:
                    Client(port).request("GET", "/healthz")
                    break
                except OSError:
                    time.sleep(0.1)
            timings = run(port, args.seconds, args.clients)
        finally:
            server.terminate()
            server.wait(timeout=10)
        stored = sqlite3.connect(db_file).execute("SELECT count(*) FROM pledge").fetchone()[0]

    print(f"{args.workers} gunicorn workers, {args.clients} clients, {args.seconds:.0f} s, SQLite")
    for name in ("GET /", "POST /pledge"):
        values = sorted(timings[name])
        if not values:
            print(f"{name:14} no successful requests")
            continue
        p50 = statistics.median(values) * 1000
        p95 = values[int(len(values) * 0.95) - 1] * 1000
        rate = len(values) / args.seconds
        print(f"{name:14} {len(values):7d} ok  {rate:8.1f}/s  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms")
    print(f"errors         {len(timings['errors']):7d}")
    accepted = len(timings["POST /pledge"])
    print(f"pledges stored {stored:7d} of {accepted} accepted")


if __name__ == "__main__":
    main()
