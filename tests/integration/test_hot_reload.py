"""`collections deploy local --watch`: a saved handler runs on the next invocation, as a new
version; a syntax error leaves the previous version serving; code that fails at import fails
its invocations with Lambda's init error and the dispatcher lives on; shared code reloads
every function; `rollback --function` changes what runs, as `live` decides on AWS. A real local
cloud and the real watcher, over a copy of `lambdas/`."""

from __future__ import annotations

import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from collections_ops import paths
from tests import images
from tests.e2e.cli import local_client, local_env, run, wait_for

_wait = partial(wait_for, timeout=60)
MARKER = 'logger.warning("reload marker {}")\n'


class Watcher:
    """`deploy local --watch` as a subprocess; its lines, as they come."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "collections_ops", "deploy", "local",
                                      "--watch"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.printed: list[str] = []  # every line, for a failure's message
        threading.Thread(target=self._read, daemon=True).start()
        self.expect("watching")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.printed.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))

    def expect(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if text in line:
                return line
            seen.append(line)
        raise AssertionError(f"the watcher never printed {text!r}; it printed: {seen[-10:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(10)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("reload")
    lambdas = root / "lambdas"  # never the repository's own handlers
    shutil.copytree(paths.lambdas_root(), lambdas,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = local_env(root / "state", COLLECTIONS_LAMBDAS_DIR=str(lambdas))
    state: dict[str, Any] = {"env": env, "lambdas": lambdas}
    try:
        started = run(env, "deploy", "local")
        assert started.returncode == 0, started.stderr
        state["status"] = json.loads(run(env, "status", "--json").stdout)
        state["watcher"] = Watcher(env)
        yield state
    finally:
        if "watcher" in state:  # a test may have started another one
            state["watcher"].stop()
        run(env, "destroy", "local", "--yes")


def _edit(path: Path, change: Callable[[str], str]) -> None:
    path.write_text(change(path.read_text()))


def _mark(lambdas: Path, word: str, *, before: str = "") -> None:
    """Make the processor's handler log a marker first thing (optionally after `before`)."""
    handler = lambdas / "image_processor" / "handler.py"
    source = handler.read_text()
    head = "def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:\n"
    body = source.split(head, 1)[1]
    while body.lstrip().startswith('logger.warning("reload marker'):  # an earlier marker
        body = body.split("\n", 1)[1]
    prefix = "".join(ln for ln in source.split(head, 1)[0].splitlines(keepends=True)
                     if "no_such_module" not in ln)  # what an earlier `before` added
    handler.write_text(prefix + before + head + "    " + MARKER.format(word) + body)


def _upload(status: dict[str, Any], key: str) -> None:
    local_client(status, "s3").put_object(Bucket=status["buckets"]["images"], Key=key,
                                     Body=images.photo(64, 48, seed=len(key)))


def _log_lines(status: dict[str, Any], pattern: str) -> list[str]:
    events = local_client(status, "logs").filter_log_events(
        logGroupName=f"/aws/lambda/{status['functions']['processor']}",
        filterPattern=f'"{pattern}"')["events"]
    return [e["message"] for e in events]


def _versions_that_logged(status: dict[str, Any], text: str) -> list[str]:
    """The version (its START line's) of each invocation that logged `text`, in order."""
    paginator = local_client(status, "logs").get_paginator("filter_log_events")
    group = f"/aws/lambda/{status['functions']['processor']}"
    events = [e for page in paginator.paginate(logGroupName=group) for e in page["events"]]
    running: dict[str, str] = {}  # log stream (one execution environment) -> its version
    found = []
    for event in sorted(events, key=lambda e: (e["timestamp"], e.get("eventId", ""))):
        message, stream = event["message"], event["logStreamName"]
        if message.startswith("START RequestId:"):
            running[stream] = message.rsplit("Version: ", 1)[1].strip()
        elif text in message:
            found.append(running.get(stream, "?"))
    return found


def _runs(status: dict[str, Any], word: str, key: str) -> list[str]:
    """Upload `key`; once the marker `word` is logged once more, the versions that logged it."""
    before = len(_versions_that_logged(status, f"reload marker {word}"))
    _upload(status, key)
    return _wait(lambda: (lambda now: now if len(now) > before else None)(
        _versions_that_logged(status, f"reload marker {word}")), f"the code marked {word}")


def _version(line: str) -> str:
    return line.split("→ version ", 1)[1].split()[0]


def _publish_marked(cloud: dict[str, Any], *words: str) -> list[str]:
    """Save the processor marked with each word in turn; the version each was published as."""
    published = []
    for word in words:
        _mark(cloud["lambdas"], word)
        published.append(_version(cloud["watcher"].expect("reloaded processor")))
    return published


def _roll(env: dict[str, str], version: str, *args: str) -> subprocess.CompletedProcess[str]:
    moved = run(env, "rollback", "local", "--function", "processor", "--to", version, *args)
    assert moved.returncode == 0, moved.stderr
    return moved


def test_a_saved_handler_runs_on_the_next_invocation_as_a_new_version(cloud):
    status, watcher = cloud["status"], cloud["watcher"]
    _mark(cloud["lambdas"], "alpha")
    line = watcher.expect("reloaded processor")
    assert " in " in line and line.endswith(" s")
    version = _version(line)
    _upload(status, "reload/alpha.jpg")
    _wait(lambda: _log_lines(status, "reload marker alpha"), "the new code's log line")
    assert any(f"Version: {version}" in ln for ln in _log_lines(status, "START RequestId"))
    listed = json.loads(run(cloud["env"], "versions", "processor", "--json").stdout)
    assert [v["version"] for v in listed if v["live"]] == [version]


def test_a_syntax_error_keeps_the_previous_version_serving(cloud):
    status, watcher, lambdas = cloud["status"], cloud["watcher"], cloud["lambdas"]
    _mark(lambdas, "beta")
    serving = _version(watcher.expect("reloaded processor"))
    handler = lambdas / "image_processor" / "handler.py"
    good = handler.read_text()
    handler.write_text(good + "\ndef broken(:\n")
    error = watcher.expect("not reloaded")
    assert "image_processor/handler.py" in error and f"still running version {serving}" in error
    _upload(status, "reload/beta.jpg")
    _wait(lambda: len(_log_lines(status, "reload marker beta")) >= 1, "the previous code")
    handler.write_text(good.replace("marker beta", "marker gamma"))
    assert int(_version(watcher.expect("reloaded processor"))) == int(serving) + 1


def test_code_that_fails_at_import_fails_its_invocation_with_an_init_error(cloud):
    status, watcher, lambdas = cloud["status"], cloud["watcher"], cloud["lambdas"]
    _mark(lambdas, "delta", before="import no_such_module_anywhere  # noqa\n")
    watcher.expect("reloaded processor")
    _upload(status, "reload/delta.jpg")
    _wait(lambda: _log_lines(status, "Runtime.ImportModuleError"), "Lambda's init error")
    _mark(lambdas, "epsilon")  # fixed: the retried event runs the fixed code
    watcher.expect("reloaded processor")
    # Lambda retries the event twice, 1 s and 2 s apart at the local time scale: on a busy
    # machine every attempt may be over before the fixed code is published, and the event then
    # waits in the dead-letter queue, where an operator redrives it. Either way, the fixed code
    # runs it (a redrive while a retry is still due finds nothing and changes nothing).
    def fixed_code_ran() -> bool:
        if _log_lines(status, "reload marker epsilon"):
            return True
        redrive = run(cloud["env"], "dlq", "redrive", "processor", "--json")
        assert redrive.returncode == 0, redrive.stderr
        return bool(_log_lines(status, "reload marker epsilon"))

    wait_for(fixed_code_ran, "the fixed code to run the event", timeout=120, interval=1)


def test_a_change_to_the_shared_code_reloads_every_function(cloud):
    watcher, lambdas = cloud["watcher"], cloud["lambdas"]
    _edit(lambdas / "shared" / "collections_core" / "text.py",
          lambda s: s + "\n# changed for the reload test\n")
    reloaded = {watcher.expect("reloaded ").split()[1] for _ in range(3)}
    assert reloaded == {"processor", "analyzer", "embedder"}


def test_rollback_runs_the_version_live_points_at_and_rolling_forward_the_newer(cloud):
    status, env = cloud["status"], cloud["env"]
    # GIVEN two published versions of the processor, each logging its own marker
    older, newer = _publish_marked(cloud, "older", "newer")
    assert _runs(status, "newer", "rollback/1.jpg")[-1] == newer
    # WHEN `live` is moved back to the older one (the sources still say "newer")
    assert json.loads(_roll(env, older, "-o", "json").stdout)["to_version"] == older
    # THEN the next upload runs the older version's code, and Lambda's START line says so
    assert _runs(status, "older", "rollback/2.jpg")[-1] == older
    listed = json.loads(run(env, "versions", "processor", "-o", "json").stdout)
    assert [v["version"] for v in listed if v["live"]] == [older]
    rows = [ln.replace("│", " ").split() for ln in
            run(env, "versions", "processor").stdout.splitlines()]
    assert [row[0] for row in rows if row[1:2] == ["◀"]] == [older]
    # AND moving `live` forward again runs the newer one
    _roll(env, newer)
    assert _runs(status, "newer", "rollback/3.jpg")[-1] == newer


def test_a_rolled_back_function_stays_rolled_back_until_new_code_is_published(cloud):
    status, env = cloud["status"], cloud["env"]
    # GIVEN the processor rolled back from "kept" to "first"
    first, _ = _publish_marked(cloud, "first", "kept")
    _roll(env, first)
    # WHEN `deploy local` runs with the code unchanged (a `cdk deploy` that changes nothing)
    again = run(env, "deploy", "local")
    assert again.returncode == 0 and "reloaded" not in again.stderr, again.stderr
    # THEN `live` stays where the rollback put it, and that is what runs
    assert _runs(status, "first", "rollback/4.jpg")[-1] == first
    # AND the next saved change publishes a new version, which goes live and runs
    [fresh] = _publish_marked(cloud, "fresh")
    assert int(fresh) > int(first)
    assert _runs(status, "fresh", "rollback/5.jpg")[-1] == fresh


def test_a_reload_for_other_code_keeps_a_rolled_back_function_where_it_was(cloud):
    status, lambdas, env = cloud["status"], cloud["lambdas"], cloud["env"]
    # GIVEN the processor rolled back from "later" to "steady", and no watcher running
    steady, _ = _publish_marked(cloud, "steady", "later")
    _roll(env, steady)
    cloud["watcher"].stop()
    try:
        # WHEN the analyzer's code changes and `deploy local` reloads the cloud (a new
        # emulator, new dispatcher processes)
        _edit(lambdas / "analyzer" / "handler.py", lambda s: s + "\n# changed for a test\n")
        again = run(env, "deploy", "local")
        assert again.returncode == 0 and "reloaded" in again.stderr, again.stderr
        # THEN the processor, whose code did not change, still runs the version it was
        # rolled back to (a `cdk deploy` updates only the analyzer's version and alias)
        assert _runs(status, "steady", "rollback/6.jpg")[-1] == steady
        listed = json.loads(run(env, "versions", "processor", "-o", "json").stdout)
        assert [v["version"] for v in listed if v["live"]] == [steady]
    finally:
        cloud["watcher"] = Watcher(env)


def test_ctrl_c_stops_watching_with_130_and_leaves_the_cloud_running(cloud):
    # Last in the module: it ends the module's watcher.
    watcher = cloud["watcher"]
    code = watcher.interrupt()
    assert code == 130, f"exit {code}; the watcher printed: {watcher.printed[-20:]}"
    watcher.expect("stopped watching")
    assert run(cloud["env"], "status").returncode == 0
