"""Local load: many uploads at once, followed to the end -- `collections load-test local
--count 100 --concurrency 8`, through the service the command wraps.

Starts the embedded local cloud (state in $COLLECTIONS_STATE_DIR/local, default
/tmp/bench-load-state/local), warms it with a few uploads (each dispatcher worker imports and
connects on first use), then uploads `--count` generated 1024x768 photo-like JPEGs from
`--concurrency` threads and follows them all through the functions' logs. Throughput is
completed uploads / (last embedding stored - first upload started); per-stage latency runs from
the previous stage done to this one done (queueing included). The local cloud is destroyed at
the end (`--keep` leaves it running, to look into a run). Besides throughput it reports the
local cloud's CPU seconds per image by part (from /proc) and the emulator's requests per image
by operation with their CPU (`GET /collections-api/requests`), and the machine's load average.

    .venv/bin/python bench/bench_load.py [--count 100] [--concurrency 8] [--warmup 8] [--keep]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from _common import destroy_local_cloud, start_local_cloud, write_result

os.environ.setdefault("COLLECTIONS_STATE_DIR", "/tmp/bench-load-state")
STATE_ROOT = Path(os.environ["COLLECTIONS_STATE_DIR"])
STATE_DIR = STATE_ROOT / "local"

NAME = "bench_load"
TARGET_PER_S = 20.0
USER = "user-load"


def _start() -> tuple[Any, float]:
    return start_local_cloud(STATE_DIR)


def _destroy() -> None:
    destroy_local_cloud(STATE_ROOT)


def _client_factory(state: Any) -> Any:
    from collections_ops.localcloud.aws.access import client_factory

    return client_factory(state)


def _cloud_cpu_s(state_dir: Path) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each part of the local cloud: its
    processes (the supervisor, the emulator, the dispatchers) and PostgreSQL's postmaster with
    its children, read from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        postmaster = int((state_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        postmaster = -1
    out: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            text = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(proc.name), int(stat[1])
        if postmaster in (pid, ppid):
            part = "postgresql"
        elif str(state_dir) not in text:
            continue
        elif "localcloud.emulator_process" in text:
            part = "emulator"
        elif "localcloud.lambda_service.dispatcher" in text:
            part = "dispatchers"
        elif "localcloud.supervisor.daemon" in text:
            part = "supervisor"
        else:
            continue
        out[part] = out.get(part, 0.0) + (int(stat[11]) + int(stat[12])) / tick
    return out


def _emulator_requests(state: Any) -> dict[str, dict[str, float]]:
    """The emulator's request counts and CPU seconds by operation, so far."""
    import json
    import urllib.request

    from collections_ops.localcloud.aws.emulator import REQUESTS_PATH

    try:
        with urllib.request.urlopen(state.endpoint_url + REQUESTS_PATH,
                                    timeout=5) as response:
            return dict(json.loads(response.read()))
    except OSError:
        return {}


def _per_image(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]],
               images: int) -> dict[str, dict[str, float]]:
    out = {}
    for name, totals in after.items():
        count = totals["count"] - before.get(name, {}).get("count", 0)
        cpu = totals["cpu_s"] - before.get(name, {}).get("cpu_s", 0.0)
        if count:
            out[name] = {"per_image": round(count / images, 2),
                         "cpu_ms_per_image": round(cpu * 1000 / images, 2),
                         "cpu_ms_per_call": round(cpu * 1000 / count, 2)}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["cpu_ms_per_image"]))


def run(count: int, concurrency: int, warmup: int, timeout: float,
        keep: bool = False) -> dict[str, Any]:
    from collections_ops.pipeline import environment
    from collections_ops.services import loadtest

    env = environment("local")
    state, start_s = _start()
    try:
        client = _client_factory(state)
        warm = None
        if warmup:
            warm = loadtest.run_load_test(client, env, count=warmup, concurrency=concurrency,
                                          timeout=timeout, user_id=f"{USER}-warmup",
                                          image_factory=lambda n: loadtest.photo_jpeg(10_000 + n))
        cpu_before, requests_before = _cloud_cpu_s(STATE_DIR), _emulator_requests(state)
        load_before = os.getloadavg()[0]
        report = loadtest.run_load_test(client, env, count=count, concurrency=concurrency,
                                        timeout=timeout, user_id=USER)
        cpu_after, requests_after = _cloud_cpu_s(STATE_DIR), _emulator_requests(state)
        load_after = os.getloadavg()[0]
        workers = os.environ.get("COLLECTIONS_LOCAL_WORKERS")
    finally:
        if not keep:
            _destroy()
    out = report.as_dict()
    used = {part: round(cpu_after.get(part, 0.0) - cpu_before.get(part, 0.0), 2)
            for part in cpu_after}
    total = sum(used.values())
    return {
        "cpu_s": used, "cpu_s_per_image": round(total / max(1, report.completed), 4),
        "machine_cpu_limit_per_s": round((os.cpu_count() or 1) / max(1e-9, total
                                         / max(1, report.completed)), 1),
        "command": f"collections load-test local --count {count} --concurrency {concurrency}",
        "image": "generated photo-like JPEG, 1024x768, quality 85 (loadtest.photo_jpeg)",
        "local_cloud_start_s": round(start_s, 2), "state_dir": str(STATE_DIR),
        "warmup_uploads": warmup,
        "warmup": warm.as_dict(items=False) if warm else None,
        "local_workers_env": workers,
        "settings_env": {name: os.environ[name] for name in (
            "COLLECTIONS_LOCAL_IAM", "COLLECTIONS_LOCAL_KEEP_ALIVE",
            "COLLECTIONS_LOCAL_MOTO_TUNING", "COLLECTIONS_LOCAL_PROCESSES") if name in os.environ},
        "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
        "emulator_requests": _per_image(requests_before, requests_after,
                                        max(1, report.completed)),
        **out,
        "target": f">= {TARGET_PER_S:g} images/s end to end",
        "met": report.ok and report.throughput_per_s >= TARGET_PER_S,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true",
                        help="leave the local cloud running afterwards (to look into it)")
    args = parser.parse_args()
    result = run(args.count, args.concurrency, max(0, args.warmup), args.timeout, args.keep)
    path = write_result(NAME, result)
    print(f"{result['command']} (+{result['warmup_uploads']} warm-up uploads; local cloud "
          f"started in {result['local_cloud_start_s']:.1f} s)")
    print(f"  completed {result['completed']}/{result['count']}, failed {result['failed']}, "
          f"stalled {result['stalled']}; uploads took {result['upload_s']:.2f} s, "
          f"wall {result['wall_s']:.2f} s")
    print(f"  throughput {result['throughput_per_s']:.2f} images/s over {result['span_s']} s "
          f"(target {result['target']}): {'met' if result['met'] else 'MISSED'}")
    print(f"  local cloud CPU {result['cpu_s']} = {result['cpu_s_per_image'] * 1000:.0f} ms per "
          f"image; {os.cpu_count()} cores could do at most "
          f"{result['machine_cpu_limit_per_s']} images/s at that cost")
    print(f"  load average {result['load_average_before_after']}; emulator requests per image "
          f"(count, CPU ms):")
    for name, r in list(result["emulator_requests"].items())[:12]:
        print(f"    {name:40s} {r['per_image']:5.2f}  {r['cpu_ms_per_image']:6.2f} ms")
    for name, s in result["latency_s"].items():
        if s:
            h = result["handler_s"].get(name)
            handler = f"   handler p50 {h['p50']:.3f} s p95 {h['p95']:.3f} s" if h else ""
            print(f"  {name:10s} p50 {s['p50']:.3f} s  p95 {s['p95']:.3f} s  max {s['max']:.3f} s"
                  f"{handler}")
    if result["failures"] or result["stalls"]:
        print(f"  failures by stage: {result['failures']}; stalled: {result['stalls']}")
    print(f"  -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
