"""Chaos on the local cloud, as a command (`collections chaos local`): named faults, each
injected while uploads are in flight, each judged by the invariants an operator relies on.

A run of one fault: upload `uploads` photos under a user of its own (`chaos-<fault>-<nonce>`)
from a pool of threads, inject the fault once a few are through the pipeline, recover as an
operator would (one `collections deploy local`), and wait for the pipeline to settle. Then:

- **lost**: uploads S3 acknowledged (a 200 to the PUT) that are gone from S3 or never got
  their item, analysis and embedding: the one thing the local cloud must never do;
- **duplicates**: an object with more than one row in any table;
- **cross-user**: a row for one user written from another user's object;
- **let in**: a request that should have been refused (unsigned, forged, a moto shortcut, a
  hostile key) and was not;
- **recovered**: the recovering `deploy local` exited 0.

An upload S3 refused (the cloud was down) is not lost: its client was told. Faults kill parts
of the cloud (`kill -9`), freeze one (SIGSTOP for a while), make the object store read-only
(`chattr +i`, root only), or send hostile requests. The CI runs the short form; the full run's
table is in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from collections_ops import errors
from collections_ops.localcloud.state import StateDir

SETTLE_TIMEOUT_S = 240.0
FREEZE_S = 8.0
READONLY_S = 6.0


@dataclass
class Outcome:
    """What one fault did to the pipeline."""

    fault: str
    uploads: int = 0
    acknowledged: int = 0
    completed: int = 0
    lost: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    cross_user: list[str] = field(default_factory=list)
    let_in: list[str] = field(default_factory=list)
    recovered: bool = True
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.recovered and not (self.lost or self.duplicates or self.cross_user
                                       or self.let_in)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class Cloud:
    """The running local cloud a chaos run works on."""

    state_dir: Path
    status: dict[str, Any]
    deploy: Callable[[], subprocess.CompletedProcess[str]]

    def session(self) -> Any:
        from collections_ops.localcloud.aws import iam

        return iam.admin_session(self.state_dir, self.status["region"])

    def s3(self) -> Any:
        from botocore.config import Config

        # Patient, as an SDK user's client: an upload that meets a restarting emulator is
        # tried again; one that still fails is refused, not acknowledged.
        return self.session().client("s3", endpoint_url=self.status["endpoint_url"],
                                     config=Config(retries={"mode": "standard",
                                                            "max_attempts": 10},
                                                   connect_timeout=3, read_timeout=30))

    def parts(self) -> dict[str, Any]:
        supervisor = json.loads(StateDir(self.state_dir).supervisor.read_text())
        return dict(supervisor["parts"])

    def supervisor_pid(self) -> int:
        return int(json.loads(StateDir(self.state_dir).state.read_text())["pid"])


@dataclass(frozen=True)
class Fault:
    name: str
    summary: str
    inject: Callable[[Cloud], str]  # returns what it did, for the table
    uploads: bool = True  # False: the fault is its own traffic (hostile requests)


def _kill(names: Callable[[str], bool]) -> Callable[[Cloud], str]:
    def inject(cloud: Cloud) -> str:
        killed = []
        for name, part in cloud.parts().items():
            if names(name) and part.get("pid"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(part["pid"]), signal.SIGKILL)
                    killed.append(name)
        return "killed " + ", ".join(sorted(killed)) if killed else "nothing to kill"

    return inject


def _kill_all(cloud: Cloud) -> str:
    pid = cloud.supervisor_pid()
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # the supervisor, its parts, PostgreSQL
    return f"killed process group {pid}"


def _freeze_emulator(cloud: Cloud) -> str:
    pid = int(cloud.parts()["emulator"]["pid"])
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(FREEZE_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    return f"froze the emulator for {FREEZE_S:.0f} s"


def _readonly_store(cloud: Cloud) -> str:
    """The object store's directory immutable for a while: writes fail with EPERM, as on a
    read-only remount. Needs root (chattr); without it the fault says so and is skipped."""
    store = StateDir(cloud.state_dir).store
    paths = [str(p) for p in (store, *sorted(p for p in store.rglob("*") if p.is_dir()))]
    if os.geteuid() != 0 or subprocess.run(["chattr", "+i", *paths], capture_output=True,
                                           check=False).returncode != 0:
        raise errors.UsageError("the read-only-store fault needs root and chattr",
                                "run it as root, or leave it out with --fault")
    try:
        time.sleep(READONLY_S)
    finally:
        subprocess.run(["chattr", "-i", *paths], capture_output=True, check=False)
    return f"store read-only for {READONLY_S:.0f} s"


def _hostile_requests(cloud: Cloud) -> str:
    """Unsigned, garbage-signed, moto-shortcut and unknown-key requests to every service the
    pipeline uses; each must be a 403 that changes nothing (recorded as `let in`)."""
    cloud.status["_let_in"].extend(_probe_requests(cloud))
    return f"{len(_PROBES) * len(_AUTH_VARIANTS)} hostile requests"


def hostile_keys(user: str) -> tuple[list[str], list[str]]:
    """(keys S3 accepts that a store could mangle and the pipeline must process, keys that
    must be refused or never processed) for `user`."""
    prefix = f"{user}/"
    room = 1024 - len(prefix.encode()) - len(".jpg")  # S3's limit is 1,024 bytes of UTF-8
    # An item id is at most 512 characters: three-byte characters reach 1,024 bytes.
    longest = prefix + "日" * (room // 3) + "k" * (room % 3) + ".jpg"
    kept = [prefix + "a%2Fb.jpg", prefix + "c%41d.jpg", prefix + "sp ace.jpg", longest]
    refused = [longest[:-4] + "k.jpg", prefix + "../x.jpg"]
    return kept, refused


def _hostile_keys(cloud: Cloud) -> str:
    """Keys S3 allows that a store could mangle (percent signs, spaces, 1,024 bytes) must be
    kept and processed; a longer one refused by S3, a `..` segment refused by the processor."""
    s3, bucket = cloud.s3(), cloud.status["buckets"]["images"]
    kept, refused = hostile_keys(cloud.status["_user"])
    for n, key in enumerate(kept):
        s3.put_object(Bucket=bucket, Key=key, Body=_photo(100 + n))
        cloud.status["_extra_acknowledged"].append(key)
    too_long, dotted = refused
    try:
        s3.put_object(Bucket=bucket, Key=too_long, Body=_photo(7))
        cloud.status["_let_in"].append(f"PUT of a {len(too_long.encode())}-byte key")
    except Exception:  # noqa: S110 - refused, as S3 refuses it
        pass
    s3.put_object(Bucket=bucket, Key=dotted, Body=_photo(8))  # S3 takes it; we must not
    cloud.status["_never_processed"] = [dotted]
    # What the store kept is what a restart brings back: the keys must survive one.
    killed = _kill(lambda n: n == "emulator")(cloud)
    return f"{len(kept)} odd keys uploaded, 1 over-long, 1 with `..`; {killed}"


FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("kill-dispatchers", "kill -9 of every dispatcher",
          _kill(lambda n: n.startswith("dispatcher"))),
    Fault("kill-emulator", "kill -9 of the AWS emulator", _kill(lambda n: n == "emulator")),
    Fault("kill-database", "kill -9 of PostgreSQL", _kill(lambda n: n == "database")),
    Fault("kill-all", "kill -9 of the whole local cloud (supervisor, parts, PostgreSQL)",
          _kill_all),
    Fault("freeze-emulator", f"SIGSTOP of the emulator for {FREEZE_S:.0f} s", _freeze_emulator),
    Fault("read-only-store", f"the object store immutable for {READONLY_S:.0f} s (root)",
          _readonly_store),
    Fault("hostile-requests", "unsigned, forged and moto-shortcut requests to every service",
          _hostile_requests, uploads=False),
    Fault("hostile-keys", "object keys with %XX, spaces, 1,024 and 1,025 bytes",
          _hostile_keys),
)}
SHORT = ("kill-emulator", "kill-all", "hostile-requests", "hostile-keys")


# ------------------------------------------------------------------------- a run


def run(cloud: Cloud, faults: list[str], *, uploads: int, concurrency: int,
        settle_s: float = SETTLE_TIMEOUT_S,
        notify: Callable[[str], None] = lambda _: None) -> list[Outcome]:
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise errors.UsageError(f"unknown fault {unknown[0]!r}",
                                f"one of {', '.join(FAULTS)}")
    outcomes = []
    for name in faults:
        notify(f"{name}: {FAULTS[name].summary}")
        outcomes.append(run_one(cloud, FAULTS[name], uploads=uploads, concurrency=concurrency,
                                settle_s=settle_s))
    return outcomes


def run_one(cloud: Cloud, fault: Fault, *, uploads: int, concurrency: int,
            settle_s: float = SETTLE_TIMEOUT_S) -> Outcome:
    started = time.monotonic()
    user = f"chaos-{fault.name}-{uuid.uuid4().hex[:6]}"
    cloud.status["_user"] = user
    cloud.status.update(_let_in=[], _extra_acknowledged=[], _never_processed=[])
    outcome = Outcome(fault.name, uploads=uploads if fault.uploads else 0)
    bucket = cloud.status["buckets"]["images"]
    keys = [f"{user}/c{n:03d}.jpg" for n in range(outcome.uploads)]
    s3 = cloud.s3()
    acknowledged: list[str] = []
    lock = threading.Lock()

    def put(n_key: tuple[int, str]) -> None:
        n, key = n_key
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=_photo(n))
        except Exception:  # refused: its client was told
            return
        with lock:
            acknowledged.append(key)

    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        futures = [pool.submit(put, item) for item in enumerate(keys)]
        if keys:
            _wait_until(lambda: len(_items(cloud, user)) >= min(3, len(keys)), timeout=120)
        try:
            outcome.detail = fault.inject(cloud)
        except errors.CollectionsError:
            raise
        except Exception as exc:  # a fault that could not be injected
            outcome.detail = f"could not inject: {exc}"
        for future in futures:
            future.result()
    deployed = cloud.deploy()
    outcome.recovered = deployed.returncode == 0
    if not outcome.recovered:
        outcome.detail += f"; deploy local exited {deployed.returncode}: " + \
            (deployed.stderr.strip().splitlines() or [""])[-1][:200]
    acknowledged += cloud.status.pop("_extra_acknowledged", [])
    outcome.let_in = list(cloud.status.pop("_let_in", []))
    outcome.acknowledged = len(acknowledged)
    if outcome.recovered:
        _judge(cloud, user, acknowledged, outcome, settle_s=settle_s)
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


def _judge(cloud: Cloud, user: str, acknowledged: list[str], outcome: Outcome, *,
           settle_s: float) -> None:
    want = set(acknowledged)
    _wait_until(lambda: want <= _complete(cloud, user), timeout=settle_s)
    time.sleep(3)  # redeliveries of finished work would show as duplicates now
    complete = _complete(cloud, user) & _still_stored(cloud, want)
    outcome.completed = len(want & complete)
    outcome.lost = sorted(want - complete)
    prefix = f"{user}/"
    with _connect(cloud) as conn:
        for table, sql in _DUPLICATES.items():
            rows = conn.execute(sql, (len(prefix), prefix)).fetchall()
            outcome.duplicates += [f"{table}: {key} x{n}" for key, n in rows]
        crossed = conn.execute(
            "SELECT original_key, user_id FROM items WHERE (left(original_key, %s) = %s) "
            "<> (user_id = %s)", (len(prefix), prefix, user)).fetchall()
        outcome.cross_user = [f"{key} stored for {owner}" for key, owner in crossed]
        for key in cloud.status.pop("_never_processed", []):
            if conn.execute("SELECT 1 FROM items WHERE original_key = %s", (key,)).fetchone():
                outcome.let_in.append(f"{key} was processed")


# Objects with more than one row, per table (fixed statements: nothing built from values).
_DUPLICATES = {
    "items": "SELECT i.original_key, count(*) FROM items i "
             "WHERE left(i.original_key, %s) = %s GROUP BY 1 HAVING count(*) > 1",
    "analyses": "SELECT i.original_key, count(*) FROM items i JOIN analyses t ON "
                "t.user_id = i.user_id AND t.item_id = i.id "
                "WHERE left(i.original_key, %s) = %s GROUP BY 1 HAVING count(*) > 1",
    "embeddings": "SELECT i.original_key, count(*) FROM items i JOIN embeddings t ON "
                  "t.user_id = i.user_id AND t.item_id = i.id "
                  "WHERE left(i.original_key, %s) = %s GROUP BY 1 HAVING count(*) > 1",
}


def _complete(cloud: Cloud, user: str) -> set[str]:
    """Keys of `user` with an item, an analysis and an embedding."""
    with _connect(cloud) as conn:
        rows = conn.execute(
            "SELECT i.original_key FROM items i "
            "JOIN analyses a ON a.user_id = i.user_id AND a.item_id = i.id "
            "JOIN embeddings e ON e.user_id = i.user_id AND e.item_id = i.id "
            "WHERE i.user_id = %s", (user,)).fetchall()
    return {str(r[0]) for r in rows}


def _still_stored(cloud: Cloud, keys: set[str]) -> set[str]:
    """The keys S3 still has (an acknowledged object must survive every fault)."""
    from botocore.exceptions import ClientError

    s3, bucket, kept = cloud.s3(), cloud.status["buckets"]["images"], set()
    for key in keys:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            continue
        kept.add(key)
    return kept


def _items(cloud: Cloud, user: str) -> list[str]:
    with _connect(cloud) as conn:
        return [str(r[0]) for r in conn.execute(
            "SELECT original_key FROM items WHERE user_id = %s", (user,)).fetchall()]


@contextlib.contextmanager
def _connect(cloud: Cloud) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(cloud.status["database_url"], connect_timeout=5) as conn:
        yield conn


def _wait_until(predicate: Callable[[], bool], *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        time.sleep(0.5)
    return False


def _photo(n: int) -> bytes:
    from collections_ops.services.loadtest import photo_jpeg

    return photo_jpeg(n, (320, 240))


# ------------------------------------------------------------------------- hostile requests

_AUTH_VARIANTS: tuple[dict[str, str], ...] = (
    {},
    {"Authorization": "garbage"},
    {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIAFAKE/20260101/us-east-1/{service}/"
                      "aws4_request, SignedHeaders=host, Signature=" + "0" * 64},
    {"X-Amz-Target": "AWSCognitoIdentityProviderService.SignUp",
     "Authorization": "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/{service}/aws4_request"},
    {"X-Amz-Target": "AWSCognitoIdentityService.GetId", "Authorization": "x"},
)
_PROBES: tuple[tuple[str, str, str, str, bytes], ...] = (
    # (service, method, path template, content type, body)
    ("iam", "POST", "/", "application/x-www-form-urlencoded",
     b"Action=CreateAccessKey&UserName=collections-local-admin&Version=2010-05-08"),
    ("s3", "GET", "/{images}?list-type=2", "", b""),
    ("s3", "PUT", "/{images}/{user}/forged.jpg", "image/jpeg", b"forged"),
    ("ssm", "POST", "/", "application/x-amz-json-1.1",
     b'{"Name": "/collections/ANTHROPIC_API_KEY", "WithDecryption": true}'),
    ("sqs", "POST", "/", "application/x-amz-json-1.1", b"{}"),
    ("events", "POST", "/", "application/x-amz-json-1.1",
     b'{"Entries": [{"Source": "collections.imageprocessor", "DetailType": "ImageProcessed",'
     b' "Detail": "{}"}]}'),
    ("logs", "POST", "/", "application/x-amz-json-1.1", b"{}"),
    ("lambda", "GET", "/2015-03-31/functions/", "", b""),
    ("sts", "POST", "/", "application/x-www-form-urlencoded",
     b"Action=GetCallerIdentity&Version=2011-06-15"),
)


def _probe_requests(cloud: Cloud) -> list[str]:
    url = urllib.parse.urlsplit(cloud.status["endpoint_url"])
    let_in = []
    fields = {"images": cloud.status["buckets"]["images"], "user": cloud.status["_user"]}
    for service, method, path, content_type, body in _PROBES:
        for variant in _AUTH_VARIANTS:
            headers = {k: v.format(service=service) for k, v in variant.items()}
            if content_type:
                headers["Content-Type"] = content_type
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            try:
                conn.request(method, path.format(**fields), body=body or None, headers=headers)
                answer = conn.getresponse()
                answer.read()
                if answer.status != 403:
                    let_in.append(f"{service} {method} {path} {sorted(variant)} → "
                                  f"{answer.status}")
            except OSError as exc:
                let_in.append(f"{service} {method} {path}: no answer ({exc})")
            finally:
                conn.close()
    return let_in


def deploy_local(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The operator's recovery: one `collections deploy local`, as a separate process."""
    return subprocess.run([sys.executable, "-m", "collections_ops", "deploy", "local"],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
