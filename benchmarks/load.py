"""Load benchmark of the REST service on loopback (not a test). Six phases, each for a fixed
time: /healthz and /v1/search from one client on an idle service; one client, then N clients
sending who-is-this requests (throughput, and how it scales with clients); N who clients again while one more client keeps asking
/healthz and /v1/search (the cheap endpoints must stay fast while the models are saturated);
N clients on the embedding search alone. Prints requests/s, p50/p95/p99 latency and errors (anything but a 200) for each, then
the CPU limit: the CPU-seconds one who request takes in the service and its database (measured
over the one-client phase), the requests a second the machine's cores allow at most (cores /
CPU-seconds), and how close the saturated service comes to it; then JSON.
Run: make bench-load (--clients, --seconds)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from serving import serving

from facedb import FaceDB, Settings  # noqa: E402
from facedb import samples as photos


class Latencies:
    """Latencies and errors (anything but a 200) of one kind of request, from any number of clients."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.errors = 0
        self.wall = 0.0
        self.lock = threading.Lock()

    def timed(self, send, http: httpx.Client, url: str) -> None:
        started = time.perf_counter()
        try:
            ok = send(http, url).status_code == 200
        except httpx.HTTPError:
            ok = False
        elapsed = time.perf_counter() - started
        with self.lock:
            self.seconds.append(elapsed)
            self.errors += not ok

    def figures(self) -> dict:
        ordered = sorted(self.seconds)

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1) if ordered else 0.0

        return {
            "requests": len(ordered),
            "errors": self.errors,
            "seconds": round(self.wall, 1),
            "requests_per_s": round(len(ordered) / self.wall, 2) if self.wall else 0.0,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 1) if ordered else 0.0,
        }


def hammer(url: str, clients: list[list[tuple]], seconds: float) -> None:
    """Each client sends its (request, Latencies) pairs in turn, over and over, for `seconds`."""
    stop = time.monotonic() + seconds

    def client(requests) -> None:
        with httpx.Client(timeout=120) as http:
            while time.monotonic() < stop:
                for send, latencies in requests:
                    latencies.timed(send, http, url)

    threads = [threading.Thread(target=client, args=(requests,)) for requests in clients]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for requests in clients:
        for _, latencies in requests:
            latencies.wall = time.monotonic() - began


def service_cpu_seconds(server: subprocess.Popen, home: Path) -> float:
    """CPU time so far of the service's processes and of its embedded PostgreSQL (the postmaster
    whose data folder lies under `home`, and its backends)."""
    processes: dict[int, psutil.Process] = {}  # by pid: a backend is found both ways
    try:
        top = psutil.Process(server.pid)
        processes |= {p.pid: p for p in [top, *top.children(recursive=True)]}
    except psutil.NoSuchProcess:
        pass
    for process in psutil.process_iter(["cmdline"]):
        if str(home) in " ".join(process.info["cmdline"] or ()):
            processes |= {p.pid: p for p in [process, *process.children(recursive=True)]}
    total = 0.0
    for process in processes.values():
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--model-workers", type=int, help="FACEDB_SERVE_MODEL_WORKERS for the service")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.model_workers:
        env["FACEDB_SERVE_MODEL_WORKERS"] = str(args.model_workers)
    with tempfile.TemporaryDirectory(prefix="facedb-load-") as scratch:
        home = Path(scratch) / "home"
        facedb = FaceDB(Settings.load(home=str(home)))
        for name, files in photos.ENROLL.items():
            facedb.enroll(name, [photos.path(f) for f in files])
        _, key = facedb.api_keys.create("load", "read")
        query = photos.path("face_recognition/obama2.jpg")
        (found,) = facedb.faces_in([query])
        embedding = [float(v) for v in found.faces[0].embedding]
        facedb.close()
        with serving(["--home", str(home)], env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as (
            server,
            url,
        ):
            headers = {"X-API-Key": key}
            image = query.read_bytes()

            def who(http, u):
                return http.post(u + "/v1/who", headers=headers, files={"image": ("q.jpg", image, "image/jpeg")})

            def search(http, u):
                return http.post(u + "/v1/search", headers=headers, json={"embedding": embedding, "top_k": 3})

            def health(http, u):
                return http.get(u + "/healthz")

            phases = {
                name: Latencies()
                for name in (
                    "healthz_idle",
                    "search_idle",
                    "who_one_client",
                    "who_alone",
                    "who",
                    "healthz_while_who_saturates",
                    "search_while_who_saturates",
                    "search_only",
                )
            }
            hammer(url, [[(who, Latencies())]], 3)  # warm-up: the first runs of each graph are slow
            hammer(url, [[(health, phases["healthz_idle"]), (search, phases["search_idle"])]], args.seconds / 2)
            cpu_before = service_cpu_seconds(server, home)
            hammer(url, [[(who, phases["who_one_client"])]], args.seconds)
            cpu_per_who = (service_cpu_seconds(server, home) - cpu_before) / max(
                1, len(phases["who_one_client"].seconds)
            )
            hammer(url, [[(who, phases["who_alone"])]] * args.clients, args.seconds)  # throughput, nothing else asked
            hammer(
                url,
                [[(who, phases["who"])]] * args.clients
                + [[(health, phases["healthz_while_who_saturates"]), (search, phases["search_while_who_saturates"])]],
                args.seconds,
            )
            hammer(url, [[(search, phases["search_only"])]] * args.clients, args.seconds)
    figures = {name: latencies.figures() for name, latencies in phases.items()}
    for name, result in figures.items():
        print(
            f"{name}: {result['requests']} requests, {result['requests_per_s']} req/s, p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms, {result['errors']} errors"
        )
    one, many = figures["who_one_client"]["requests_per_s"], figures["who_alone"]["requests_per_s"]
    scaling = round(many / one, 2) if one else None
    cores = len(os.sched_getaffinity(0))
    limit = cores / cpu_per_who if cpu_per_who > 0 else 0.0
    of_limit = round(many / limit, 3) if limit else None
    healthz_p99 = figures["healthz_while_who_saturates"]["p99_ms"]
    print(f"who: {many} req/s with {args.clients} clients, {one} with one: {scaling}x")
    print(
        f"CPU limit: one who takes {cpu_per_who:.3f} CPU-seconds (service and database), so {cores} cores allow "
        f"{limit:.2f} a second; saturated: {many} a second, {of_limit or 0:.0%} of it (aim: 90%); "
        f"/healthz p99 while who saturates {healthz_p99} ms (aim: under 50)"
    )
    print(
        json.dumps(
            {
                "clients": args.clients,
                "seconds": args.seconds,
                "who_scaling": scaling,
                "cores": cores,
                "cpu_seconds_per_who": round(cpu_per_who, 4),
                "cpu_limit_per_s": round(limit, 2),
                "saturated_of_cpu_limit": of_limit,
                **figures,
            }
        )
    )


if __name__ == "__main__":
    main()
