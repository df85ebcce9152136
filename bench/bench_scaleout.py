"""Scale-out: throughput of 1 worker vs 2 workers on one queue, and the distributed path's latency.

Everything runs here, as real processes on loopback: a private ``redis-server``, one API node
(``abstractvision serve --broker``), workers (``abstractvision worker``, one torch thread each,
so two workers use the machine's two cores) and, for comparison, the single-process server
(``abstractvision serve``) on the same tiny random-weight Stable Diffusion (built here). The
store is a shared folder (``--s3`` uses a loopback S3 server, moto, instead).

1. Throughput: ``--jobs`` jobs submitted at once to the API node (``POST /v1/jobs``), time until
   the last one completes; with 1 worker, then with 2 on the same queue, alternating for
   ``--rounds`` rounds; the ratio of the medians.
2. Latency: one ``POST /v1/images/generations`` (b64_json) at a time, ``--calls`` times, through
   the API node + 1 idle worker vs through the single-process server, interleaved; medians and
   the difference.

The engine is made to dominate with ``--steps`` denoising steps at ``--size`` px.

usage: python bench/bench_scaleout.py [--jobs 16] [--rounds 3] [--calls 20] [--steps 12] [--size 64]
                                      [--s3] [--json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Procs:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env, self.procs = root, env, {}  # type: ignore[var-annotated]

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen(args, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def abstractvision(*args: str) -> list[str]:
    return [sys.executable, "-m", "abstractvision", *args]


def wait_workers(url: str, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(httpx.get(url + "/healthz", timeout=5).json().get("workers", [])) == count:
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"expected {count} workers")


def _until_done(client: httpx.Client, job_id: str) -> None:
    """Follow one job's server-sent events until its terminal status (no polling)."""
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=120) as events:
        name = ""
        for line in events.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:") and name == "status":
                status = json.loads(line[5:])["status"]
                if status == "completed":
                    return
                if status in ("failed", "cancelled"):
                    raise RuntimeError(f"job {job_id} {status}")
    raise RuntimeError(f"the event stream of job {job_id} ended before the job did")


def burst(url: str, jobs: int, params: dict[str, Any]) -> float:
    """Seconds from submitting ``jobs`` jobs at once to the last one completed.

    Each job is followed on its event stream (the API node blocks on Redis for it), not
    polled: the client's own load stays small, so two workers get the machine's two cores.
    """
    # one client (its SSL context and pool made once) holds every job's stream
    limits = httpx.Limits(max_connections=jobs + 4, max_keepalive_connections=jobs + 4)
    with httpx.Client(base_url=url, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            ids = list(pool.map(lambda i: client.post("/v1/jobs", json={**params, "seed": i}).json()["id"], range(jobs)))
            for done in [pool.submit(_until_done, client, job_id) for job_id in ids]:
                done.result()
        return time.perf_counter() - started


def one_call(client: httpx.Client, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    reply = client.post("/v1/images/generations", json=body)
    reply.raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--s3", action="store_true", help="artifacts on a loopback S3 server (moto)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        sys.exit("redis-server is needed (apt-get install redis-server)")
    sys.path.insert(0, str(REPO / "src"))
    from abstractvision.testing.tiny_diffusers import build_tiny_sd

    root = Path(tempfile.mkdtemp(prefix="av-bench-scaleout-"))
    model = build_tiny_sd(str(root / "tiny-sd"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTVISION_")}
    env.update(PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = Procs(root, env)
    redis_port = free_port()
    procs.start("redis", [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(root)])  # fmt: skip
    wait_port(redis_port)
    broker = f"redis://127.0.0.1:{redis_port}/0"
    store = str(root / "store")
    if args.s3:
        s3_port = free_port()
        procs.start("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)])
        wait_port(s3_port)
        procs.env.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1",
                         AWS_ENDPOINT_URL=f"http://127.0.0.1:{s3_port}")  # fmt: skip
        httpx.put(f"http://127.0.0.1:{s3_port}/bench")
        store = "s3://bench/artifacts"
    worker = abstractvision("worker", "--broker", broker, "--store", store, "--backend", "diffusers",
                            "--device", "cpu", "-m", f"sd={model}", "-q")  # fmt: skip
    api_port, single_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    single = f"http://127.0.0.1:{single_port}"
    params = {"task": "text_to_image", "model": "sd", "prompt": "bench", "steps": args.steps,
              "width": args.size, "height": args.size}  # fmt: skip
    try:
        procs.start("api", abstractvision("serve", "--broker", broker, "--store", store, "--port", str(api_port),
                                          "--queue-size", str(4 * args.jobs), "--log-level", "warning", "-q"))  # fmt: skip
        procs.start("w1", worker)
        wait_port(api_port)
        wait_workers(api, 1)
        burst(api, 2, params)  # warm-up
        one, two = [], []
        for _ in range(args.rounds):
            one.append(burst(api, args.jobs, params))
            procs.start("w2", worker)
            wait_workers(api, 2)
            burst(api, 2, params)  # warm the second worker
            two.append(burst(api, args.jobs, params))
            procs.stop("w2")
            wait_workers(api, 1)
        # latency: the distributed path (1 idle worker) vs the single-process server
        procs.start("single", abstractvision("serve", "--backend", "diffusers", "--device", "cpu", "-m",
                                             f"sd={model}", "--port", str(single_port), "--preload",
                                             "--log-level", "warning", "-q"))  # fmt: skip
        wait_port(single_port, timeout=120)
        body = {"model": "sd", "prompt": "bench", "size": f"{args.size}x{args.size}", "steps": args.steps}
        dist, local = [], []
        with httpx.Client(base_url=api, timeout=60) as a, httpx.Client(base_url=single, timeout=60) as s:
            one_call(a, body), one_call(s, body)  # warm-up
            for i in range(args.calls):
                pair = [(dist, a), (local, s)] if i % 2 == 0 else [(local, s), (dist, a)]
                for out, client in pair:
                    out.append(one_call(client, body))
    finally:
        procs.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    t1, t2 = statistics.median(one), statistics.median(two)
    result = {
        "jobs": args.jobs,
        "steps": args.steps,
        "size": args.size,
        "store": "s3 (moto)" if args.s3 else "shared folder",
        "one_worker_s": round(t1, 3),
        "two_workers_s": round(t2, 3),
        "one_worker_jobs_per_s": round(args.jobs / t1, 3),
        "two_workers_jobs_per_s": round(args.jobs / t2, 3),
        "ratio": round(t1 / t2, 3),
        "latency_distributed_ms": round(statistics.median(dist) * 1000, 1),
        "latency_single_process_ms": round(statistics.median(local) * 1000, 1),
        "added_latency_ms": round((statistics.median(dist) - statistics.median(local)) * 1000, 1),
        "rounds": {"one": [round(x, 3) for x in one], "two": [round(x, 3) for x in two]},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.jobs} jobs, tiny SD {args.size}px x {args.steps} steps, one torch thread per worker, {result['store']}")
    print(f"  1 worker : {t1:.2f} s  ({result['one_worker_jobs_per_s']} jobs/s)   rounds {result['rounds']['one']}")
    print(f"  2 workers: {t2:.2f} s  ({result['two_workers_jobs_per_s']} jobs/s)   rounds {result['rounds']['two']}")
    print(f"  ratio    : {result['ratio']}x")
    print(
        f"  one request: distributed {result['latency_distributed_ms']} ms vs single process "
        f"{result['latency_single_process_ms']} ms (+{result['added_latency_ms']} ms)"
    )


if __name__ == "__main__":
    main()
