"""The CLI's contract, driven in process (typer's CliRunner) over every command the app has:
`--help` works, an unknown function is a usage error with one message, `-o json` prints one
parseable document (an error too: {error, hint, exit_code}), and without credentials every
AWS command exits 5. AWS is the moto server; nothing is patched.

Every command is found by walking the click tree, so a new command is covered by being added.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from collections_ops.cli import exits
from collections_ops.cli.app import app, version_text
from collections_ops.pipeline import environment
from tests.moto_server import reset_moto

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED = {code for _, code, _ in exits.TABLE} | {0, 1, 2, 130}

# The smallest arguments each command needs beyond the environment (`-e dev` is added).
ARGS: dict[str, list[str]] = {
    "verify": ["some-item"], "search": ["kayak"], "events send": ["guide"],
    "test-upload": ["--sample"], "versions": ["embedder"], "concurrency": ["embedder"],
    "configure": ["embedder", "--timeout", "60"],
    "tune": ["embedder", "--payload", "{payload}"],
    "dlq show": ["processor"], "dlq redrive": ["processor", "--dry-run"],
    "alarms test": ["collections-dev-analyzer-errors"], "secrets put": ["VOYAGE_API_KEY",
                                                                         "--stdin"],
    "secrets rm": ["VOYAGE_API_KEY", "-y"], "secrets import": ["{dotenv}"],
    "rollback": ["--function", "embedder", "--dry-run"], "load-test": ["--count", "1"],
    "deploy": ["--skip-build"], "replay": ["some-item", "--from", "embedder"],
}
# Offline (no AWS) or long-running by nature: not part of the credentials/JSON sweeps.
OFFLINE = {"build", "synth"}
SLOW_OR_CDK = {"build", "synth", "diff", "destroy", "bootstrap", "logs"}


def _commands(group: Any = None, prefix: str = "") -> Iterator[tuple[str, Any]]:
    group = group or typer.main.get_command(app)
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if hasattr(command, "commands"):
            yield from _commands(command, f"{path} ")
        else:
            yield path, command


COMMANDS = dict(_commands())


def _params(command: Any) -> set[str]:
    return {opt for p in command.params for opt in getattr(p, "opts", [])}


def _argv(path: str, tmp: Path) -> list[str]:
    dotenv, payload = tmp / ".env", tmp / "event.json"
    dotenv.write_text("VOYAGE_API_KEY=pa-test\n")
    payload.write_text('{"detail": {}}')
    return [*path.split(), *[a.format(dotenv=dotenv, payload=payload)
                             for a in ARGS.get(path, [])], "-e", "dev"]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A clean operator: no config file, no COLLECTIONS_* or provider settings, wide output."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("COLLECTIONS_STATE_DIR", str(tmp_path / "state"))
    for name in ("COLLECTIONS_ENV", "VOYAGE_API_KEY", "DATABASE_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return CliRunner()


@pytest.fixture
def moto_account(runner: CliRunner, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:

    reset_moto(moto_endpoint)
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    return moto_endpoint


def _documents(stdout: str) -> list[Any]:
    """The JSON on stdout: one document, or JSON Lines of objects."""
    try:
        return [json.loads(stdout)]
    except json.JSONDecodeError:
        lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
        assert lines and all(isinstance(x, dict) for x in lines), stdout
        return lines


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_has_help(runner: CliRunner, path: str) -> None:
    result = runner.invoke(app, [*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_version_names_the_package_python_boto3_and_the_cdk_pin(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    pin = json.loads((ROOT / "infrastructure" / "package.json").read_text())
    assert result.output.strip() == version_text()
    assert re.match(r"collections \d+\.\d+\.\d+ \(Python 3\.\d+", result.output)
    assert pin["devDependencies"]["aws-cdk"] in result.output and "boto3" in result.output


FUNCTION_COMMANDS = sorted(p for p, c in COMMANDS.items()
                           if any(getattr(a, "metavar", None) == "FUNCTION" for a in c.params)
                           or "--function" in _params(c))


def test_the_function_commands_are_the_expected_ones() -> None:
    assert {"versions", "tune", "concurrency", "dlq show", "dlq redrive", "logs",
            "rollback"} <= set(FUNCTION_COMMANDS)


@pytest.mark.parametrize("path", FUNCTION_COMMANDS)
def test_an_unknown_function_is_a_usage_error_with_one_message(runner: CliRunner,
                                                                 path: str) -> None:
    args = ["--function", "nosuch"] if "--function" in _params(COMMANDS[path]) else ["nosuch"]
    result = runner.invoke(app, [*path.split(), *args, "-e", "local"])
    assert result.exit_code == 2, result.output
    assert "'nosuch' is not one of 'processor', 'analyzer', 'embedder'" in result.output
    assert "unexpected" not in result.output and "Value error" not in result.output


@pytest.mark.parametrize("argv", [["status", "local", "-o", "yaml"],
                                  ["versions", "nosuch", "-e", "dev", "--json"]])
def test_a_usage_error_is_the_sentence_without_the_validators_prefix(
        runner: CliRunner, argv: list[str]) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert "is not one of" in result.output
    assert "Value error" not in result.output


def test_n_is_limit_in_logs_too(runner: CliRunner, moto_account: str) -> None:
    import time

    import boto3

    from collections_ops.pipeline import function

    # GIVEN five lines in the analyzer's log group
    logs = boto3.client("logs", endpoint_url=moto_account)
    group = function("analyzer").log_group("dev")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000) - 5000
    logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
        {"timestamp": now + i, "message": f"line {i}"} for i in range(5)])
    # WHEN `logs -n 2` and `--limit 2` run THEN both print the last two lines, oldest first
    for flag in ("-n", "--limit"):
        result = runner.invoke(app, ["logs", "analyzer", flag, "2", "-e", "dev", "-o", "json"])
        assert result.exit_code == 0, result.output
        assert [r["message"] for r in json.loads(result.stdout)] == ["line 3", "line 4"]


JSON_COMMANDS = sorted(p for p, c in COMMANDS.items()
                       if "--output" in _params(c) and p not in SLOW_OR_CDK)


@pytest.mark.parametrize("path", JSON_COMMANDS)
def test_json_output_is_one_document_even_for_an_error(runner: CliRunner, moto_account: str,
                                                       tmp_path: Path, path: str) -> None:
    # GIVEN an empty AWS account (moto) WHEN the command runs with -o json against dev
    result = runner.invoke(app, [*_argv(path, tmp_path), "-o", "json"], input="")
    # THEN stdout is JSON; a failure is an error object carrying the process's exit code
    docs = _documents(result.stdout)
    errors_ = [d for d in docs if isinstance(d, dict) and set(d) == {"error", "hint",
                                                                     "exit_code"}]
    if result.exit_code not in (0, 8, 10, 11, 3) or errors_:
        assert errors_ and errors_[-1]["exit_code"] == result.exit_code, result.output
    assert result.exit_code in DOCUMENTED
    assert "unexpected" not in result.stderr, result.stderr


def test_the_json_alias_is_the_same_as_output_json(runner: CliRunner) -> None:
    short = runner.invoke(app, ["status", "local", "--json"])
    long = runner.invoke(app, ["status", "local", "-o", "json"])
    assert short.exit_code == long.exit_code == 4  # the local cloud is not running here
    assert json.loads(short.stdout) == json.loads(long.stdout)


LOCAL_ONLY = {"chaos", "env"}  # usage errors (2) on an AWS environment, before any credential check
AWS_COMMANDS = sorted(p for p in COMMANDS
                      if p not in OFFLINE and p not in LOCAL_ONLY and p != "logs")


@pytest.mark.parametrize("path", sorted(LOCAL_ONLY))
def test_a_local_only_command_on_an_aws_environment_is_a_usage_error(runner: CliRunner,
                                                                      tmp_path: Path,
                                                                      path: str) -> None:
    result = runner.invoke(app, _argv(path, tmp_path))
    assert result.exit_code == 2, result.output
    assert "local cloud only" in result.stderr


@pytest.mark.parametrize("path", AWS_COMMANDS)
def test_without_credentials_every_aws_command_exits_5(runner: CliRunner, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       path: str) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    result = runner.invoke(app, _argv(path, tmp_path), input="a-value\n")
    assert result.exit_code == 5, result.output
    assert "no AWS credentials found" in result.stderr


def test_logs_without_credentials_exits_5(runner: CliRunner, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    result = runner.invoke(app, ["logs", "all", "-e", "dev"])
    assert result.exit_code == 5, result.output


@pytest.mark.parametrize("argv", [["status", "local"], ["status", "--env", "local"],
                                  ["status", "-e", "local"]])
def test_the_environment_is_positional_or_an_option(runner: CliRunner, argv: list[str]) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 4 and "the local cloud is not running" in result.stderr


def test_the_environment_given_twice_must_agree(runner: CliRunner) -> None:
    result = runner.invoke(app, ["status", "dev", "--env", "local"])
    assert result.exit_code == 2 and "given twice" in result.output


def test_the_default_environment_comes_from_the_config_file(runner: CliRunner,
                                                            tmp_path: Path) -> None:
    (tmp_path / "collections.toml").write_text('env = "staging"\n')
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 10 and "unknown environment 'staging'" in result.stderr


def test_a_malformed_config_file_is_named_with_its_line(runner: CliRunner,
                                                        tmp_path: Path) -> None:
    (tmp_path / "collections.toml").write_text('env = "local"\nstate_dir = [oops\n')
    result = runner.invoke(app, ["status", "-e", "local", "-o", "json"])
    assert result.exit_code == 10
    error = json.loads(result.stdout)
    assert "collections.toml" in error["error"] and "line 2" in error["error"]
    assert error["exit_code"] == 10


@pytest.mark.parametrize(("argv", "code"), [
    (["secrets", "rm", "FOO", "-y", "-e", "local"], 2),
    (["secrets", "put", "FOO", "--stdin", "-e", "local"], 2),
    (["test-upload", "-e", "local"], 2),
    (["test-upload", "no-such-file.jpg", "-e", "local"], 3),
    (["secrets", "import", "no-such.env", "-e", "local"], 3),
    (["tune", "embedder", "--payload", "no-such.json", "-e", "dev"], 3),
    (["tune", "embedder", "--payload", "{payload}", "--memory", "lots", "-e", "dev"], 2),
    (["tune", "embedder", "--payload", "{bad_payload}", "-e", "dev"], 2),
])
def test_typed_input_never_ends_in_unexpected(runner: CliRunner, tmp_path: Path,
                                              argv: list[str], code: int) -> None:
    (tmp_path / "event.json").write_text("{}")
    (tmp_path / "bad.json").write_text("{not json")
    argv = [a.format(payload=tmp_path / "event.json", bad_payload=tmp_path / "bad.json")
            for a in argv]
    result = runner.invoke(app, argv, input="")
    assert result.exit_code == code, result.output
    assert "unexpected" not in result.stderr


def test_an_empty_secret_on_stdin_is_a_usage_error(runner: CliRunner, moto_account: str) -> None:
    result = runner.invoke(app, ["secrets", "put", "VOYAGE_API_KEY", "--stdin", "-e", "dev"],
                           input="")
    assert result.exit_code == 2 and "the secret value is empty" in result.stderr


def test_a_prompt_without_a_terminal_is_declined_not_interrupted(runner: CliRunner,
                                                                moto_account: str) -> None:
    # GIVEN a secret WHEN `secrets rm` runs with no terminal to ask on and no --yes
    import boto3

    ssm = boto3.client("ssm", endpoint_url=moto_account)
    ssm.put_parameter(Name="/collections/VOYAGE_API_KEY", Value="pa-keep", Type="SecureString")
    result = runner.invoke(app, ["secrets", "rm", "VOYAGE_API_KEY", "-e", "dev"], input="")
    # THEN it is a declined prompt (exit 1) with a hint to pass --yes, and nothing is deleted
    assert result.exit_code == exits.ExitCode.FAILURE == 1, result.output
    assert "not confirmed" in result.stderr and "pass --yes" in result.stderr
    assert "interrupted" not in result.stderr
    as_json = runner.invoke(app, ["secrets", "rm", "VOYAGE_API_KEY", "-e", "dev", "-o", "json"],
                            input="")
    assert json.loads(as_json.stdout)["exit_code"] == as_json.exit_code == 1
    assert ssm.get_parameter(Name="/collections/VOYAGE_API_KEY")["Parameter"]["Version"] == 1


def _put_required_secrets(endpoint: str) -> None:
    import boto3

    ssm = boto3.client("ssm", endpoint_url=endpoint)
    for name, value in (("DATABASE_URL", "postgresql://u:p@db.example/collections"),
                        ("ANTHROPIC_API_KEY", "sk-ant-test"), ("VOYAGE_API_KEY", "pa-test")):
        ssm.put_parameter(Name=environment("dev").parameter_name(name), Value=value,
                          Type="SecureString")


def test_a_live_check_with_no_provider_reachable_exits_4_not_config(
        runner: CliRunner, moto_account: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    # GIVEN every required secret, and providers that cannot be reached (a loopback port that
    # refuses connections: no network to them)
    _put_required_secrets(moto_account)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
        for name in ("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "VOYAGE_BASE_URL"):
            monkeypatch.setenv(name, nowhere)
        result = runner.invoke(app, ["secrets", "verify", "--live", "-e", "dev"])
        as_json = runner.invoke(app, ["secrets", "verify", "--live", "-e", "dev", "-o", "json"])
    # THEN exit 4 (unreachable), and the hint is about the network, not re-entering a key
    assert result.exit_code == exits.ExitCode.NOT_READY == 4, result.output
    assert "could not be reached" in result.stderr and "network" in result.stderr
    assert "secrets put" not in result.output
    [checks] = _documents(as_json.stdout)  # one document: the checks, then exit 4
    assert as_json.exit_code == 4
    live = {c["name"]: c for c in checks if "provider" in c["detail"]}
    assert set(live) == {"/collections/ANTHROPIC_API_KEY", "/collections/VOYAGE_API_KEY"}
    assert all(not c["ok"] and "secrets put" not in c["fix"] for c in live.values())


def test_a_live_check_a_provider_rejects_is_a_configuration_error(
        runner: CliRunner, moto_account: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.providers import FakeProviders

    _put_required_secrets(moto_account)
    with FakeProviders(api_key="pa-the-right-key") as fake:  # the stored keys are not it
        for name, url in (("ANTHROPIC_BASE_URL", fake.anthropic_base_url),
                          ("VOYAGE_BASE_URL", fake.voyage_base_url)):
            monkeypatch.setenv(name, url)
        result = runner.invoke(app, ["secrets", "verify", "--live", "-e", "dev"])
        assert fake.embeddings.requests, "the live check reached the fake provider"
    assert result.exit_code == exits.ExitCode.CONFIG == 10, result.output
    assert "secrets put" in result.stderr


def test_tables_keep_identifying_columns_whole_off_a_terminal(runner: CliRunner,
                                                             moto_account: str) -> None:
    result = runner.invoke(app, ["secrets", "list", "-e", "dev"], env={"COLUMNS": ""})
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "LANGSMITH_API_KEY" in line]
    assert rows and "/collections/LANGSMITH_API_KEY" in rows[0]
    assert "…" not in result.stdout


def test_the_readme_exit_code_table_is_the_contract() -> None:
    readme = (ROOT / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d+) \| (.+) \|$", readme, re.M))
    for _, code, meaning in exits.TABLE:
        assert str(code) in table, f"exit {code} ({meaning}) is missing from README.md"
    assert {"0", "1", "2", "130"} <= set(table)


def _codes() -> set[int]:
    return {v for k, v in vars(exits.ExitCode).items() if k.isupper()}


def test_the_documented_exit_codes_are_exactly_the_exits_table() -> None:
    # README's table and docs/operations.md's list name every code of ExitCode and no other,
    # and every code TABLE maps an error to is one of them.
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    assert {int(c) for c in re.findall(r"^\| (\d+) \|", section, re.M)} == _codes()
    operations = (ROOT / "docs" / "operations.md").read_text()
    listed = operations.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    assert {int(c) for c in re.findall(r"\b(\d+)\s+[a-z`]", listed)} == _codes()
    assert {code for _, code, _ in exits.TABLE} <= _codes()


def test_a_local_cloud_that_fails_to_start_exits_not_ready(runner: CliRunner,
                                                           tmp_path: Path) -> None:
    # GIVEN a state directory whose supervisor lock is a directory (the supervisor dies at
    # once) WHEN `deploy local` starts the local cloud THEN exit 4 (not running), naming
    # the failure and the log, never 1
    from collections_ops import settings
    from collections_ops.localcloud.state import StateDir
    from collections_ops.localcloud.supervisor import manager

    state = settings.load().state_dir("local")
    StateDir(state).daemon_lock.mkdir(parents=True)
    try:
        result = runner.invoke(app, ["deploy", "local"])
    finally:
        manager.stop(state, remove=True)  # were it to start after all
    assert result.exit_code == exits.ExitCode.NOT_READY == 4, result.output
    assert "the local cloud failed to start" in result.stderr
    assert "daemon.log" in result.stderr or "full log" in result.stderr


def test_watch_reloads_only_the_local_cloud(runner: CliRunner) -> None:
    # GIVEN an AWS environment WHEN `deploy --watch` is asked for THEN a usage error (exit 2),
    # before any credentials check or build
    result = runner.invoke(app, ["deploy", "dev", "--watch"])
    assert result.exit_code == 2, result.output
    assert "deploy local --watch" in result.output


@pytest.mark.parametrize("flag", ["--user", "--yes", "--env", "--profile", "--region",
                                  "--output"])
def test_a_shared_option_is_declared_only_in_options(flag: str) -> None:
    # A command takes a shared option through cli/options.py's types, so it means one thing
    # everywhere; a second typer.Option spelling it elsewhere would drift.
    commands = ROOT / "src" / "collections_ops" / "cli" / "commands"
    declaring = [p.name for p in sorted(commands.glob("*.py")) if f'"{flag}"' in p.read_text()]
    assert declaring == [], f"{flag} declared outside cli/options.py in {declaring}"


def test_the_readme_names_exactly_the_commands_taking_a_positional_environment() -> None:
    # The list is generated from the app: every command whose arguments include `env`.
    positional = {path for path, command in COMMANDS.items()
                  if any(type(p).__name__ == "TyperArgument" and p.name == "env"
                         for p in command.params)}
    readme = (ROOT / "README.md").read_text()
    sentence = readme.split("Commands whose subject is the environment", 1)[1].split(")", 1)[0]
    named = set()
    for name in re.findall(r"`([^`]+)`", sentence):
        group, _, subs = name.rpartition(" ")
        named |= {f"{group} {s}".strip() for s in subs.split("|")}
    assert named == positional
