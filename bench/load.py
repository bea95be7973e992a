"""Bounded loopback load test: N concurrent client streams against an in-process server for a fixed time.

Starts the server on ``127.0.0.1:0`` (its event loop on a background thread, as the tests do) with the
given model repository, warms it up with one request, then for ``--seconds`` (capped at
``MAX_SECONDS``) runs ``--streams`` client threads, each calling Explain (default: occlusion with a
coarse window, so each call is short) or Predict back to back on its own channel, while one more
thread calls the health ``Check`` every 50 ms. Measures:

* request latency p50 / p99 / max and throughput, per finished call (successful or not);
* health ``Check`` latency p50 / p99 / max — how responsive the server stays under load;
* errors by status code (a ``RESOURCE_EXHAUSTED`` count means more streams than ``max_concurrent +
  max_queue`` admits);
* the process's resident memory (``VmRSS``, ``/proc/self/status``) after warm-up, a quarter of the way
  in (onnxruntime's arenas grow while concurrency ramps up) and at the end — the drift — plus its
  peak (``VmHWM``) and one sample a second in the JSON;
* the server's own ``onnxplain_requests_total`` by code, which must agree with the clients' count.

Clients and server share one process (and its GIL), so latencies include client-side work and RSS
covers both. Loopback only; every loop ends by time and by count. Writes ``load.json`` and
``load.md`` into ``--out``. Usage::

    .venv/bin/python bench/load.py --streams 8 --seconds 20            # Explain, occlusion window 56
    .venv/bin/python bench/load.py --rpc predict --streams 16 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import io
import json
import os
import platform
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import skimage.data
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from onnxplain.client import Client
from onnxplain.server.app import create_server
from onnxplain.server.limits import ServerLimits

ROOT = Path(__file__).resolve().parents[1]
MAX_SECONDS = 300.0  # hard cap on --seconds
MAX_CALLS_PER_STREAM = 100_000  # every loop is bounded in count as well as time
HEALTH_INTERVAL = 0.05
CALL_TIMEOUT = 60.0


def memory_kib(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (``VmRSS``, ``VmHWM``); 0 where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def percentiles(samples: list[float]) -> dict[str, float | None]:
    """p50 / p99 / max in milliseconds (None when there are no samples)."""
    if not samples:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ms = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2)}


class InProcessServer:
    """An onnxplain server on 127.0.0.1:0 whose event loop runs on a background thread."""

    def __init__(self, models: Path, limits: ServerLimits):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.app = self._run(create_server(models, address="127.0.0.1:0", limits=limits))
        self.address = f"127.0.0.1:{self.app.port}"

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(300)

    def requests_by_code(self, rpc: str) -> dict[str, int]:
        """The server's own ``onnxplain_requests_total`` for ``rpc``, by code."""
        counts = {}
        for family in self.app.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == "onnxplain_requests_total" and sample.labels["rpc"] == rpc:
                    counts[sample.labels["code"]] = int(sample.value)
        return counts

    def stop(self) -> None:
        self._run(self.app.stop(grace=5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class Load:
    """What the client threads saw; appended to from several threads (list.append is atomic)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.codes: list[str] = []
        self.health: list[float] = []
        self.health_errors: list[str] = []
        self.rss_kib: list[tuple[float, int]] = []


def call_once(client: Client, args: argparse.Namespace, image: bytes) -> None:
    if args.rpc == "predict":
        client.predict(args.model, image, top_k=1)
    else:
        client.explain(args.model, image, args.method, top_k=1, params=json.loads(args.params))


def stream_worker(address: str, args: argparse.Namespace, image: bytes, deadline: float, load: Load) -> None:
    with Client(address, timeout=CALL_TIMEOUT) as client:
        for _ in range(MAX_CALLS_PER_STREAM):
            if time.monotonic() >= deadline:
                return
            started = time.perf_counter()
            try:
                call_once(client, args, image)
                code = "OK"
            except grpc.RpcError as error:
                code = error.code().name
            load.latencies.append(time.perf_counter() - started)
            load.codes.append(code)


def health_worker(address: str, deadline: float, load: Load, started: float) -> None:
    next_rss = 0.0
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(int((deadline - time.monotonic()) / HEALTH_INTERVAL) + 1):
            now = time.monotonic()
            if now >= deadline:
                return
            if now >= next_rss:
                load.rss_kib.append((round(now - started, 2), memory_kib("VmRSS")))
                next_rss = now + 1.0
            t0 = time.perf_counter()
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                load.health.append(time.perf_counter() - t0)
            except grpc.RpcError as error:
                load.health_errors.append(error.code().name)
            time.sleep(max(0.0, HEALTH_INTERVAL - (time.perf_counter() - t0)))


def run(args: argparse.Namespace) -> dict:
    seconds = min(args.seconds, MAX_SECONDS)
    buffer = io.BytesIO()
    Image.fromarray(skimage.data.coffee()).save(buffer, format="PNG")
    image = buffer.getvalue()
    limits = ServerLimits(max_concurrent=args.max_concurrent, max_queue=args.max_queue)
    server = InProcessServer(args.models, limits)
    try:
        with Client(server.address, timeout=CALL_TIMEOUT) as client:
            call_once(client, args, image)  # warm-up: first-run costs stay out of the numbers
        rss_start, load = memory_kib("VmRSS"), Load()
        started = time.monotonic()
        deadline = started + seconds
        threads = [threading.Thread(target=stream_worker, args=(server.address, args, image, deadline, load))
                   for _ in range(args.streams)]
        threads.append(threading.Thread(target=health_worker, args=(server.address, deadline, load, started)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + CALL_TIMEOUT + 10)
        elapsed = time.monotonic() - started
        rss_end = memory_kib("VmRSS")
        rpc = "onnxplain.v1.ModelService/Predict" if args.rpc == "predict" else "onnxplain.v1.ExplanationService/Explain"
        for _ in range(40):  # a client has its answer a moment before the server records the end
            server_counts = server.requests_by_code(rpc)
            if sum(server_counts.values()) >= len(load.codes) + 1:  # + the warm-up call
                break
            time.sleep(0.05)
    finally:
        server.stop()
    codes = Counter(load.codes)
    # onnxruntime's arenas grow while concurrency ramps up; growth after that is the drift that matters
    quarter = [kib for t, kib in load.rss_kib if t >= seconds / 4] or [rss_end]
    after_quarter = round(quarter[0] / 1024, 1)
    return {
        "config": {"rpc": args.rpc, "method": None if args.rpc == "predict" else args.method,
                   "params": None if args.rpc == "predict" else json.loads(args.params), "model": args.model,
                   "streams": args.streams, "seconds": seconds, "max_concurrent": args.max_concurrent,
                   "max_queue": args.max_queue, "health_interval_s": HEALTH_INTERVAL},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_start": os.getloadavg()},
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 2),
        "requests": len(load.codes),
        "requests_per_s": round(len(load.codes) / elapsed, 2),
        "latency": percentiles(load.latencies),
        "codes": dict(codes),
        "errors": sum(n for code, n in codes.items() if code != "OK"),
        "server_counts_excluding_warmup": {k: v - (k == "OK") for k, v in server_counts.items()},
        "health": {**percentiles(load.health), "checks": len(load.health), "errors": dict(Counter(load.health_errors))},
        "rss_mib": {"start": round(rss_start / 1024, 1), "after_first_quarter": after_quarter,
                    "end": round(rss_end / 1024, 1), "drift": round((rss_end - rss_start) / 1024, 1),
                    "drift_after_first_quarter": round(rss_end / 1024 - after_quarter, 1),
                    "peak": round(max(memory_kib("VmHWM"), rss_end) / 1024, 1)},
        "rss_samples_mib": [(t, round(kib / 1024, 1)) for t, kib in load.rss_kib],
    }


def markdown(result: dict) -> str:
    c, lat, health, rss = result["config"], result["latency"], result["health"], result["rss_mib"]
    what = "Predict" if c["rpc"] == "predict" else f"Explain {c['method']} {c['params']}"
    rows = [
        ("load", f"{c['streams']} streams × {c['seconds']:g} s of {what} on {c['model']} "
                 f"(max_concurrent {c['max_concurrent']}, max_queue {c['max_queue']}, {result['machine']['cpus']} CPUs)"),
        ("requests", f"{result['requests']} ({result['requests_per_s']}/s)"),
        ("latency p50 / p99 / max", f"{lat['p50_ms']} / {lat['p99_ms']} / {lat['max_ms']} ms"),
        ("errors by code", ", ".join(f"{k} {v}" for k, v in sorted(result["codes"].items()) if k != "OK") or "none"),
        ("server's count by code", ", ".join(f"{k} {v}" for k, v in sorted(result["server_counts_excluding_warmup"].items()))),
        ("health Check p50 / p99 / max", f"{health['p50_ms']} / {health['p99_ms']} / {health['max_ms']} ms "
                                         f"({health['checks']} checks, errors: {health['errors'] or 'none'})"),
        ("RSS start → ¼ → end (drift)", f"{rss['start']} → {rss['after_first_quarter']} → {rss['end']} MiB "
                                        f"({rss['drift']:+} MiB; {rss['drift_after_first_quarter']:+} MiB after ¼)"),
        ("RSS peak", f"{rss['peak']} MiB"),
    ]
    lines = [f"Loopback load, {result['when']}", "", "| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="model repository (default: the bundled one)")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--rpc", choices=("explain", "predict"), default="explain")
    parser.add_argument("--method", default="occlusion")
    parser.add_argument("--params", default='{"window": 56, "stride": 56}',
                        help="the method's parameters as JSON (default: 4·4 windows + 1 = 17 evaluations + the top-1 forward)")
    parser.add_argument("--streams", type=int, default=8, help="concurrent client streams")
    parser.add_argument("--seconds", type=float, default=20.0, help=f"duration (at most {MAX_SECONDS:g})")
    parser.add_argument("--max-concurrent", type=int, default=ServerLimits().max_concurrent)
    parser.add_argument("--max-queue", type=int, default=ServerLimits().max_queue)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="folder for load.json/load.md")
    args = parser.parse_args()
    result = run(args)
    table = markdown(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "load.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
