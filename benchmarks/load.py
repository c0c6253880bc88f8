"""Load benchmark of the REST service on loopback (not a test): N concurrent clients send
who-is-this requests for a fixed time, then the same for the embedding search alone (no
detection). Prints requests/s, p50/p95/p99 latency and errors. Run: make bench-load"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import photos  # noqa: E402

from facedb import FaceDB, Settings  # noqa: E402
from facedb.apikeys import ApiKeys  # noqa: E402


def hammer(url: str, send, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        nonlocal errors
        with httpx.Client(timeout=60) as http:
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    ok = send(http, url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors += not ok

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - began
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1) if ordered else 0.0

    return {"requests": len(ordered), "errors": errors, "seconds": round(wall, 1),
            "requests_per_s": round(len(ordered) / wall, 2), "p50_ms": pct(0.50), "p95_ms": pct(0.95),
            "p99_ms": pct(0.99), "mean_ms": round(statistics.fmean(ordered) * 1000, 1) if ordered else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facedb-load-") as scratch:
        home = Path(scratch) / "home"
        facedb = FaceDB(Settings.load(home=str(home)))
        for name, files in photos.ENROLL.items():
            facedb.enroll(name, [photos.path(f) for f in files])
        _, key = ApiKeys(facedb.database.engine).create("load", "read")
        query = photos.path("face_recognition/obama2.jpg")
        (found,) = facedb.faces_in([query])
        embedding = [float(v) for v in found.faces[0].embedding]
        facedb.close()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "facedb", "--home", str(home), "serve", "--port", str(port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            headers = {"X-API-Key": key}
            image = query.read_bytes()
            who = hammer(url, lambda http, u: http.post(u + "/v1/who", headers=headers,
                                                        files={"image": ("q.jpg", image, "image/jpeg")}),
                         args.clients, args.seconds)
            search = hammer(url, lambda http, u: http.post(u + "/v1/search", headers=headers,
                                                           json={"embedding": embedding, "top_k": 3}),
                            args.clients, args.seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)
    for name, result in (("who (decode, detect, embed, search)", who), ("search only (embedding in)", search)):
        print(f"{name}: {args.clients} clients, {result['seconds']} s: {result['requests_per_s']} req/s, "
              f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms, "
              f"{result['errors']} errors")
    print(json.dumps({"clients": args.clients, "who": who, "search": search}))


if __name__ == "__main__":
    main()
