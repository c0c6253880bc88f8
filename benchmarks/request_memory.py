"""Memory of the REST service under large photos (not a test): `facedb serve` in its own process
on loopback; N clients at once each send /v1/compare with COPIES copies of one all-black PNG of
PIXELS pixels (a few hundred KB that decode to hundreds of MB: the attack of issue 27). Prints
the server process's resident memory idle, at its peak (sampled every 20 ms) and a few seconds
after the answers, the answers' statuses and seconds, then JSON.

--checkout runs another checkout's facedb (e.g. a `git worktree` of an older commit) with this
machine's Python, so that two versions can be compared in the same run on the same machine.
Run: python benchmarks/request_memory.py [--pixels 110e6] [--clients 4] [--copies 2]."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from PIL import Image
from serving import serving

ROOT = Path(__file__).resolve().parent.parent


def black_png(pixels: float) -> bytes:
    side = int(pixels**0.5)
    buffer = io.BytesIO()
    Image.new("L", (side, side), 0).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def run(checkout: Path, pixels: float, clients: int, copies: int, settle: float) -> dict:
    photo = black_png(pixels)
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"PYTHONPATH": str(checkout)}
        facedb = [sys.executable, "-m", "facedb", "--home", home]
        key = subprocess.run(
            [*facedb, "apikey", "create", "bench", "--scope", "read"],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        with serving(["--home", home], env, cwd=checkout, stdout=subprocess.DEVNULL) as (server, url):
            process = psutil.Process(server.pid)
            time.sleep(1.0)
            idle = process.memory_info().rss
            peak, done = idle, threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, process.memory_info().rss)
                    time.sleep(0.02)

            answers: list[tuple[int, float, str]] = []

            def ask() -> None:
                started = time.perf_counter()
                with httpx.Client(timeout=600) as http:
                    reply = http.post(
                        url + "/v1/compare",
                        headers={"X-API-Key": key},
                        files=[("images", (f"{i}.png", photo, "image/png")) for i in range(copies)],
                    )
                answers.append((reply.status_code, time.perf_counter() - started, reply.text[:160]))

            sampler = threading.Thread(target=sample)
            sampler.start()
            threads = [threading.Thread(target=ask) for _ in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            time.sleep(settle)
            done.set()
            sampler.join()
            after = process.memory_info().rss
    mib = 2**20
    return {
        "checkout": str(checkout),
        "photo_pixels": int(pixels**0.5) ** 2,
        "photo_bytes": len(photo),
        "clients": clients,
        "copies": copies,
        "idle_mib": round(idle / mib),
        "peak_mib": round(peak / mib),
        "after_mib": round(after / mib),
        "statuses": sorted(status for status, _, _ in answers),
        "seconds": sorted(round(seconds, 1) for _, seconds, _ in answers),
        "first_answer": answers[0][2] if answers else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, action="append", help="facedb checkout(s) to run (default: this one)")
    parser.add_argument("--pixels", type=float, default=110e6)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the answers before 'after'")
    args = parser.parse_args()
    results = []
    for checkout in args.checkout or [ROOT]:
        result = run(checkout.resolve(), args.pixels, args.clients, args.copies, args.settle)
        results.append(result)
        print(
            f"{result['checkout']}: {args.clients} clients x {args.copies} copies of a {result['photo_pixels']:,}-pixel "
            f"PNG ({result['photo_bytes']:,} bytes): idle {result['idle_mib']} MiB, peak {result['peak_mib']} MiB, "
            f"after {result['after_mib']} MiB; statuses {result['statuses']}, seconds {result['seconds']}",
            flush=True,
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
