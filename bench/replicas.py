"""Photos/s with 1 and 2 replicas on PostgreSQL + S3 (moto), the load from a separate process.

    .venv/bin/python bench/scale.py --replicas 1,2 [--photos 40] [--threads 4] [--rounds 2]
    .venv/bin/python bench/replicas.py --replicas 1,2 …      (the same)

It prints figures and never fails on a missed target (there is none: issue #19 asks for the
figures). On this machine, in one run:

1. a fresh PostgreSQL database migrated by `gridproof migrate`, one moto S3 server (a Python
   process: MinIO, in docker-compose, costs less per object), the test zone's users;
2. for each replica count N, in rounds (forwards then backwards, as the machine drifts):
   N `gridproof serve --no-migrate --image-processes 1` processes, each with its own folder,
   GRIDPROOF_STORAGE=s3 (tests/replicas.py starts them as tests/live/test_replicas.py does);
3. a client PROCESS (not a thread of this one) that POSTs /api/v1/issues with one 12 MP phone
   photo each (~4 MB, bench/ingest.py's photo, a distinct EXIF block per upload so that every
   one is stored), `--threads` keep-alive connections spread over the replicas in turn; the
   request bodies are encoded before the clock starts;
4. prints photos/s, the median latency, and the CPU that the replicas (with their decoding
   processes), moto, the client and everything else on the machine used meanwhile.

Two cores bound it: 12 MP photos cost ~150 ms of CPU each, so one replica with one decoding
process already keeps ~1.2 cores busy, and moto, PostgreSQL and the client take the rest; a
second replica on the same two cores cannot add cores, only overlap. What scales with replicas
is measured here only as far as the machine lets it; on two machines it would be each one's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "bench"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import dashboard  # noqa: E402
import ingest  # noqa: E402

from app.db import get_engine  # noqa: E402
from tests.replicas import Cluster, Replica, replicas  # noqa: E402
from tests.s3_server import MotoServer  # noqa: E402

FORM = {"category": "flyposter", "lat": str(ingest.LAT), "lon": str(ingest.LON)}
SERVE = ("--image-processes", "1")  # one decoding process per replica: 2 replicas, 2 cores


@dataclass
class Run:
    replicas: int
    photos: int
    wall_s: float
    latencies: list[float]
    server_cpu_s: float
    moto_cpu_s: float
    client_cpu_s: float
    other_cores: float

    @property
    def per_s(self) -> float:
        return self.photos / self.wall_s


def _client(ports: list[int], token: str, bodies: list[tuple[bytes, str]], threads: int,
            results: Any) -> None:  # fmt: skip
    """The load (in its own process): `threads` connections, connection i to replica i mod N."""
    todo, lock = iter(range(len(bodies))), threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []

    def take() -> tuple[bytes, str] | None:
        with lock:
            i = next(todo, None)
        return None if i is None else bodies[i]

    def connection(port: int) -> None:
        ingest.post_reports(port, token, take, latencies, errors)

    workers = [
        threading.Thread(target=connection, args=(ports[i % len(ports)],)) for i in range(threads)
    ]
    cpu, wall = time.process_time(), time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put((time.perf_counter() - wall, latencies, errors, time.process_time() - cpu))


def _tree_ticks(roots: list[int]) -> int:
    total = 0
    for root in roots:
        for pid in ingest.process_tree(root):
            with suppress(FileNotFoundError, ProcessLookupError):  # ended meanwhile
                total += ingest._proc_cpu_ticks(pid)
    return total


def measure(
    group: list[Replica],
    moto: MotoServer,
    token: str,
    bodies: list[tuple[bytes, str]],
    threads: int,
) -> Run:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    client = context.Process(
        target=_client, args=([r.port for r in group], token, bodies, threads, results)
    )
    servers = [replica.pid for replica in group]
    load = ingest.OtherLoad()
    server_ticks, moto_ticks = _tree_ticks(servers), _tree_ticks([moto.pid])
    client.start()
    wall, latencies, errors, client_cpu = results.get(timeout=1800)
    client.join()
    server_ticks = _tree_ticks(servers) - server_ticks
    moto_ticks = _tree_ticks([moto.pid]) - moto_ticks
    if errors:
        raise RuntimeError(f"upload failed: {errors[0]}\n{group[0].log()}")
    # Everything this process did not start meanwhile (PostgreSQL among it): the client's CPU
    # and the servers' are subtracted from the machine's, this process's own is.
    other = load.cores(server_ticks + moto_ticks + round(client_cpu * ingest.CLK_TCK))
    return Run(
        len(group),
        len(bodies),
        wall,
        latencies,
        server_ticks / ingest.CLK_TCK,
        moto_ticks / ingest.CLK_TCK,
        client_cpu,
        other,
    )


def describe(run: Run) -> None:
    per_photo = 1000 / run.photos
    print(
        f"  {run.replicas} replica(s): {run.per_s:6.2f} photos/s  "
        f"(median {statistics.median(run.latencies) * 1000:5.0f} ms; CPU per photo: replicas "
        f"{run.server_cpu_s * per_photo:4.0f} ms, moto {run.moto_cpu_s * per_photo:3.0f} ms, "
        f"client {run.client_cpu_s * per_photo:3.0f} ms; other processes {run.other_cores:.2f} "
        "cores)"
    )


def run(counts: list[int], photos: int, threads: int, rounds: int) -> int:
    print(
        f"{os.cpu_count()} CPUs, load average {dashboard.load_average()}; {photos} photos of "
        f"12 MP per run, {threads} client connections, {rounds} round(s)"
    )
    moto = MotoServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp, dashboard.fresh_database(0) as url:
            folder = Path(tmp)
            source, _big = ingest.generate_photos(folder)
            # One worker's token uploads every photo: no upload rate limit in the way.
            unlimited = {"GRIDPROOF_UPLOAD_BURST": "1000000"}
            bucket = moto.new_bucket()
            cluster = Cluster(url, moto.endpoint, bucket, folder / "cluster", extra=unlimited)
            cluster.command("migrate")
            cluster.make_audit_key()
            token = _token(cluster)
            numbering = count()
            runs: dict[int, list[Run]] = {n: [] for n in counts}
            for round_ in range(rounds):
                for n in counts if round_ % 2 == 0 else counts[::-1]:
                    bodies = [ingest._encoded(FORM, source, next(numbering)) for _ in range(photos)]
                    names = [f"r{n}-{round_}-{i}" for i in range(n)]
                    with replicas(cluster, *names, serve_options=SERVE) as group:
                        runs[n].append(measure(group, moto, token, bodies, threads))
                    describe(runs[n][-1])
            report(runs)
            get_engine(url).dispose()
    finally:
        moto.stop()
    print(f"(load average {dashboard.load_average()})")
    return 0


def _token(cluster: Cluster) -> str:
    """A worker's API token, made as an operator makes one (`gridproof org add`, `user add`)."""
    cluster.command("org", "add", "D", "--name", "经开区", "--kind", "district")
    added = cluster.command("user", "add", "bench_worker", "--role", "worker", "--org", "D")
    return added.stdout.splitlines()[-1]


def report(runs: dict[int, list[Run]]) -> None:
    print("\nall rounds added up:")
    totals = {}
    for n, done in runs.items():
        photos, wall = sum(r.photos for r in done), sum(r.wall_s for r in done)
        totals[n] = photos / wall
        print(f"  {n} replica(s): {totals[n]:6.2f} photos/s over {photos} photos")
    if 1 in totals:
        for n, per_s in totals.items():
            if n != 1:
                ratio = per_s / totals[1]
                cores = os.cpu_count()
                print(f"  {n} replicas / 1: {ratio:.2f}× (bounded by this machine's {cores} cores)")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", default="1,2", help="replica counts, e.g. 1,2")
    parser.add_argument("--photos", type=int, default=40, help="uploads per run")
    parser.add_argument("--threads", type=int, default=4, help="client connections")
    parser.add_argument("--rounds", type=int, default=2)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    counts = [int(n) for n in args.replicas.split(",")]
    return run(counts, args.photos, args.threads, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
