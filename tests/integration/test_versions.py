"""Published versions and the `live` alias: list them, see what changed, move `live` back."""

from __future__ import annotations

import io
import zipfile

import pytest

from collections_ops import errors
from collections_ops.pipeline import ANALYZER
from collections_ops.services import versions


def publish_new_code(lam, name: str, source: str, memory: int | None = None) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", source)
    lam.update_function_code(FunctionName=name, ZipFile=buf.getvalue())
    if memory:
        lam.update_function_configuration(FunctionName=name, MemorySize=memory)
    return str(lam.publish_version(FunctionName=name)["Version"])


def test_rollback_moves_live_to_the_previous_version_and_says_what_changed(pipeline):
    lam = pipeline.client("lambda")
    name = ANALYZER.function_name("local")
    new = publish_new_code(lam, name, "def handler(e, c):\n    return 2\n", memory=2048)
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion=new)
    listed = versions.list_versions(lam, pipeline.env, ANALYZER)
    assert [(v.version, v.live) for v in listed] == [("1", False), (new, True)]

    preview = versions.roll_back(lam, pipeline.env, ANALYZER, dry_run=True)
    assert (preview.from_version, preview.to_version) == (new, "1")
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == new

    done = versions.roll_back(lam, pipeline.env, ANALYZER)
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "1"
    assert any(c.startswith("CodeSha256:") for c in done.changes)
    assert "MemorySize: 2048 -> 1024" in done.changes


def test_there_is_nothing_before_the_first_version(pipeline):
    with pytest.raises(errors.NotFound, match="no version before 1"):
        versions.roll_back(pipeline.client("lambda"), pipeline.env, ANALYZER)


def test_an_unknown_target_version_is_named(pipeline):
    with pytest.raises(errors.NotFound, match="has no version 7"):
        versions.roll_back(pipeline.client("lambda"), pipeline.env, ANALYZER, to="7")


# --------------------------------------------------------------------------- taking effect


def test_configure_publishes_and_moves_live(pipeline):
    # GIVEN the analyzer live on version 1
    lam = pipeline.client("lambda")
    name = ANALYZER.function_name("local")
    # WHEN its timeout and memory are changed
    done = versions.configure(lam, pipeline.env, ANALYZER, timeout=600, memory=2048,
                              sleep=lambda s: None)
    # THEN a new version carries them, `live` points at it, and $LATEST is not what runs
    assert (done.from_version, done.to_version) == ("1", "2")
    live = lam.get_function_configuration(FunctionName=name, Qualifier="live")
    assert (live["Version"], live["Timeout"], live["MemorySize"]) == ("2", 600, 2048)
    assert "Timeout: 120 -> 600" in done.changes and "MemorySize: 1024 -> 2048" in done.changes
    assert [v.version for v in versions.list_versions(lam, pipeline.env, ANALYZER)
            if v.live] == ["2"]
    # AND the version before stays, so rollback returns to the old configuration
    back = versions.roll_back(lam, pipeline.env, ANALYZER)
    assert back.to_version == "1" and "Timeout: 600 -> 120" in back.changes


def test_tune_apply_moves_live_to_a_new_version(pipeline):
    from collections_ops.services import tune

    lam = pipeline.client("lambda")
    published = tune.apply_live(lam, pipeline.env, ANALYZER, 1536, sleep=lambda s: None)
    assert published.to_version == "2"
    assert lam.get_alias(FunctionName=ANALYZER.function_name("local"),
                         Name="live")["FunctionVersion"] == "2"
    assert lam.get_function_configuration(FunctionName=ANALYZER.function_name("local"),
                                          Qualifier="live")["MemorySize"] == 1536


def test_configure_refuses_values_lambda_refuses(pipeline):
    with pytest.raises(errors.UsageError, match="1-900 s"):
        versions.configure(pipeline.client("lambda"), pipeline.env, ANALYZER, timeout=901)
    with pytest.raises(errors.UsageError, match="nothing to change"):
        versions.configure(pipeline.client("lambda"), pipeline.env, ANALYZER)


def test_prune_keeps_the_newest_the_live_one_and_the_one_before():
    every = [str(n) for n in range(1, 16)]
    # live is old (rolled back to 4): 4 and 3 are kept beyond the newest ones
    doomed = versions.prunable(every, live="4", keep=10)
    assert "4" not in doomed and "3" not in doomed
    assert doomed == ["1", "2", "5", "6", "7"]
    assert versions.prunable(every[:3], live="3", keep=10) == []
    with pytest.raises(errors.UsageError, match="at least 2"):
        versions.prunable(every, live="15", keep=1)


def test_prune_deletes_old_versions_through_lambda(pipeline):
    lam = pipeline.client("lambda")
    name = ANALYZER.function_name("local")
    for memory in (1100, 1200, 1300, 1400):
        versions.configure(lam, pipeline.env, ANALYZER, memory=memory, keep=100,
                           sleep=lambda s: None)
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "5"
    deleted = versions.prune(lam, pipeline.env, ANALYZER, keep=3)
    assert deleted == ["1", "2"]
    left = [v.version for v in versions.list_versions(lam, pipeline.env, ANALYZER)]
    assert left == ["3", "4", "5"]


def _stack_with_versions(published: dict[str, str]):
    """CloudFormation as AWS answers for the compute stack (moto's CloudFormation gives an
    `AWS::Lambda::Version` no physical id and has no `AWS::Lambda::Alias`)."""
    import boto3
    from botocore.stub import Stubber

    cfn = boto3.client("cloudformation", region_name="us-east-1")
    stub = Stubber(cfn)
    stub.add_response("list_stack_resources", {"StackResourceSummaries": [
        {"LogicalResourceId": f"V{n}", "ResourceType": "AWS::Lambda::Version",
         "PhysicalResourceId": f"arn:aws:lambda:us-east-1:123456789012:function:{name}:{v}",
         "LastUpdatedTimestamp": "2026-01-01T00:00:00Z", "ResourceStatus": "CREATE_COMPLETE"}
        for n, (name, v) in enumerate(published.items())]})
    stub.activate()
    return cfn


def test_an_alias_moved_outside_the_stack_is_drift(pipeline):
    from collections_ops.services import drift

    lam = pipeline.client("lambda")
    name = ANALYZER.function_name("local")
    versions.configure(lam, pipeline.env, ANALYZER, memory=2048, sleep=lambda s: None)
    [moved] = drift.alias_drift(_stack_with_versions({name: "1"}), lam, pipeline.env)
    assert not moved.in_sync
    assert moved.detail == (f"{name}: live runs version 2, the stack's is 1 (moved outside "
                            "CloudFormation; a deploy moves it back)")
    [same] = drift.alias_drift(_stack_with_versions({name: "2"}), lam, pipeline.env)
    assert same.in_sync


def test_after_a_deploy_every_function_is_pruned_and_missing_ones_skipped(pipeline):
    lam = pipeline.client("lambda")
    for memory in (1100, 1200, 1300):
        versions.configure(lam, pipeline.env, ANALYZER, memory=memory, keep=100,
                           sleep=lambda s: None)
    pruned = versions.prune_all(lam, pipeline.env, keep=2)  # no operations function locally
    assert pruned == {ANALYZER.function_name("local"): ["1", "2"]}


def test_pruning_never_deletes_the_version_the_stack_records(pipeline):
    """`configure` moved live far past the stack's version 1: a deploy's prune keeps 1 (a
    stack rollback returns to it) as it keeps live and the one before."""
    from collections_ops.services import drift

    lam = pipeline.client("lambda")
    name = ANALYZER.function_name("local")
    for memory in (1100, 1200, 1300, 1400, 1500):
        versions.configure(lam, pipeline.env, ANALYZER, memory=memory, keep=100,
                           sleep=lambda s: None)
    recorded = drift.stack_versions(_stack_with_versions({name: "1"}), "collections-local")
    assert recorded == {name: "1"}
    pruned = versions.prune_all(lam, pipeline.env, keep=3, recorded=recorded)
    assert pruned == {name: ["2", "3", "4"]}
    left = [v.version for v in versions.list_versions(lam, pipeline.env, ANALYZER)]
    assert left == ["1", "5", "6"]


def test_pruning_keeps_a_version_another_alias_points_at(pipeline):
    lam = pipeline.client("lambda")
    name = ANALYZER.function_name("local")
    for memory in (1100, 1200, 1300, 1400):
        versions.configure(lam, pipeline.env, ANALYZER, memory=memory, keep=100,
                           sleep=lambda s: None)
    lam.create_alias(FunctionName=name, Name="canary", FunctionVersion="2")
    assert versions.prune(lam, pipeline.env, ANALYZER, keep=3) == ["1", "3"]


class _SnapStartLambda:
    """Lambda as SnapStart makes it: a version just published is Pending for a few polls
    (its snapshot is being taken), then Active; records when the alias moved."""

    def __init__(self, lam, pending_polls: int, final: str = "Active") -> None:
        self._lam, self._left, self._final = lam, pending_polls, final
        self.events: list[str] = []

    def __getattr__(self, name):
        return getattr(self._lam, name)

    def get_function_configuration(self, **kwargs):
        cfg = dict(self._lam.get_function_configuration(**kwargs))
        if kwargs.get("Qualifier") not in (None, "$LATEST", "live"):
            state = "Pending" if self._left > 0 else self._final
            self._left -= 1
            self.events.append(state)
            cfg["State"] = state
            if state == "Failed":
                cfg.update(StateReason="snapshot failed", StateReasonCode="SnapStartTimeout")
        return cfg

    def update_alias(self, **kwargs):
        self.events.append("alias moved")
        return self._lam.update_alias(**kwargs)


def test_with_snapstart_live_moves_only_once_the_new_version_is_active(pipeline):
    lam = _SnapStartLambda(pipeline.client("lambda"), pending_polls=3)
    versions.configure(lam, pipeline.env, ANALYZER, memory=1500, sleep=lambda s: None)
    active = lam.events.index("Active")
    assert lam.events[:active] == ["Pending"] * 3
    assert lam.events.index("alias moved") > active


def test_a_version_whose_snapshot_failed_never_becomes_live(pipeline):
    lam = _SnapStartLambda(pipeline.client("lambda"), pending_polls=1, final="Failed")
    name = ANALYZER.function_name("local")
    with pytest.raises(errors.CollectionsError, match="is Failed: snapshot failed"):
        versions.configure(lam, pipeline.env, ANALYZER, memory=1600, sleep=lambda s: None)
    assert "alias moved" not in lam.events
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "1"


# --------------------------------------------------------------------------- what runs locally


@pytest.fixture
def followed(pipeline, tmp_path, monkeypatch):
    """The emulator's hooks (`watch.follow_live`) on this test's moto: each move of `live`
    points the code stamp under `tmp_path` at that version's package. Undone after the test."""
    from moto.awslambda.models import LambdaBackend

    from collections_ops.localcloud.lambda_service import watch

    for method in ("create_alias", "update_alias", "publish_version"):
        monkeypatch.setattr(LambdaBackend, method, getattr(LambdaBackend, method))
    watch.follow_live(pipeline.env, tmp_path, code="test")
    return tmp_path


class Reloads:
    """A dispatcher's reloader, recording what it would import instead of importing it."""

    def __init__(self, state_dir) -> None:
        from collections_ops.localcloud.lambda_service.reloader import CodeReloader
        from collections_ops.localcloud.state import StateDir

        self.purged: list[dict[str, str]] = []
        self.reloader = CodeReloader(
            StateDir(state_dir).code_stamp,
            lambda dirs, shared: self.purged.append({k: str(v) for k, v in dirs.items()}))

    def next_invocation(self) -> str | None:
        with self.reloader.invocation(ANALYZER) as version:
            return version


def _handler_in(folder: str) -> str:
    from pathlib import Path

    return (Path(folder) / "handler.py").read_text()


def test_the_dispatchers_run_the_package_of_the_version_live_points_at(pipeline, followed):
    from collections_ops.localcloud.provision import function_code

    # GIVEN the analyzer's version 2 published with other code and live
    lam = pipeline.client("lambda")
    name = ANALYZER.function_name("local")
    new = publish_new_code(lam, name, "def handler(e, c):\n    return 2\n")
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion=new)
    reloads = Reloads(followed)  # a dispatcher starting now runs version 2's package
    assert reloads.next_invocation() == new
    assert _handler_in(reloads.purged[-1]["analyzer"]).endswith("return 2\n")
    # WHEN `live` is rolled back to version 1
    versions.roll_back(lam, pipeline.env, ANALYZER, to="1")
    # THEN the next invocation runs version 1's package (the provisioned handler), as 1
    assert reloads.next_invocation() == "1"
    with zipfile.ZipFile(io.BytesIO(function_code(ANALYZER))) as zf:
        assert _handler_in(reloads.purged[-1]["analyzer"]) == zf.read("handler.py").decode()
    # AND rolling forward runs version 2's again, from the folder unpacked before
    versions.roll_back(lam, pipeline.env, ANALYZER, to=new)
    assert reloads.next_invocation() == new
    assert reloads.purged[-1] == reloads.purged[0]
    assert len(reloads.purged) == 3


def test_configure_runs_the_same_code_as_the_new_version_and_keeps_it(pipeline, followed):
    from collections_ops.localcloud.provision import code_digest, function_code
    from collections_ops.localcloud.state import StateDir

    reloads = Reloads(followed)
    lam = pipeline.client("lambda")
    # WHEN the analyzer's memory is changed (a new version of the same code goes live)
    done = versions.configure(lam, pipeline.env, ANALYZER, memory=2048, sleep=lambda s: None)
    # THEN it runs as the new version, with no reload of its code
    assert reloads.next_invocation() == done.to_version == "2"
    assert reloads.purged == []
    # AND the version's package is kept, so a restart publishes the same versions again
    kept = StateDir(followed).lambda_history / "analyzer" / "2.zip"
    assert code_digest(kept.read_bytes()) == code_digest(function_code(ANALYZER))
