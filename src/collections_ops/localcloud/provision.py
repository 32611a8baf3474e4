"""Creating the pipeline's AWS resources on the local endpoint, from the pipeline definition.

Locally, S3 notifications and EventBridge rules deliver to SQS queues (moto cannot invoke a
Lambda target from `put_events`); the dispatcher drains those queues into the handlers.
Everything else is created as the CDK app synthesizes it. The queues, async-invocation
settings, rules and parameters are rendered from the same spec objects as the stacks render
(`pipeline.queues`, `pipeline.rules`, `pipeline.parameters`), the roles' policies from
`pipeline.permissions`; tests/infra/test_local_contract.py compares what rendering can still
get wrong -- the functions' configuration, aliases, permissions, the notification, tags -- with
the deliberate differences in one table (docs/local-cloud.md lists them).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collections_ops import paths
from collections_ops.localcloud.aws.policies import role_policies
from collections_ops.pipeline import (
    FUNCTIONS,
    LIVE_ALIAS,
    PARAMETER_STORE_POLICY,
    RUNTIME,
    Environment,
    Function,
    common_env,
    function,
    parameters,
    queues,
    resource_tags,
    rules,
)

SHARED_PACKAGE = "collections_core"


@dataclass(frozen=True)
class Provisioned:
    images_bucket: str
    thumbnails_bucket: str
    queue_urls: dict[str, str]  # function key -> trigger queue url
    dlq_urls: dict[str, str]  # function key -> dead-letter queue url


def function_sources(fn: Function) -> dict[str, Path]:
    """The files of `fn`'s bundle, by their name in it: the function's modules and the shared
    package, as `collections build` lays them out (less the vendored dependencies)."""
    sources = {path.name: path for path in paths.function_files(paths.lambda_code_dir(fn.code_dir))}
    shared = paths.shared_code_dir() / SHARED_PACKAGE
    for path in sorted(shared.rglob("*.py")):
        if "__pycache__" not in path.parts:
            sources[f"{SHARED_PACKAGE}/{path.relative_to(shared).as_posix()}"] = path
    return sources


def zip_sources(sources: dict[str, bytes]) -> bytes:
    """A deployment package of these files, with fixed timestamps: the same code zips the same."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(sources):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, sources[name])
    return buf.getvalue()


def function_code(fn: Function) -> bytes:
    return zip_sources({name: path.read_bytes() for name, path in function_sources(fn).items()})


def shared_digest() -> str:
    """The identity of the shared code alone (a change reloads every function)."""
    digest = hashlib.sha256()
    shared = paths.shared_code_dir() / SHARED_PACKAGE
    for path in sorted(shared.rglob("*.py")):
        if "__pycache__" not in path.parts:
            digest.update(path.relative_to(shared).as_posix().encode() + b"\0"
                          + path.read_bytes() + b"\0")
    return digest.hexdigest()


def parameter_store_policy(env: Environment, fn: Function, *, region: str, account: str) -> str:
    """The guide's `ParameterStorePolicy`: read exactly this function's parameters."""
    return json.dumps(role_policies(env, fn, region=region, account=account)[
        PARAMETER_STORE_POLICY])


def code_fingerprint() -> str:
    """The handlers' code as the local cloud runs it (function folders and the shared code):
    a `deploy local` that finds it changed reloads the cloud and publishes new versions."""
    digest = hashlib.sha256()
    shared = paths.shared_code_dir()
    files = [(shared, path) for path in sorted(shared.rglob("*.py"))
             if "__pycache__" not in path.parts]
    for fn in FUNCTIONS:
        folder = paths.lambda_code_dir(fn.code_dir)
        files += [(folder, path) for path in paths.function_files(folder)]
    for folder, path in files:
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def code_digest(code: bytes) -> str:
    """The code's identity: names and contents of the zip's files (not their timestamps)."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(io.BytesIO(code)) as zf:
        for name in sorted(zf.namelist()):
            digest.update(name.encode() + b"\0" + zf.read(name) + b"\0")
    return digest.hexdigest()


def _history(history_dir: Path | None, fn: Function, code: bytes) -> list[bytes]:
    """Every version's code, oldest first, the current code last: a start whose code changed
    publishes a new version, as a `cdk deploy` of changed code does, and `live` moves to it.
    Kept under the state dir, so versions and rollbacks survive restarts."""
    if history_dir is None:
        return [code]
    folder = history_dir / fn.key
    folder.mkdir(parents=True, exist_ok=True)
    kept = sorted(folder.glob("*.zip"), key=lambda p: int(p.stem))
    versions = [p.read_bytes() for p in kept]
    if not versions or code_digest(versions[-1]) != code_digest(code):
        (folder / f"{len(versions) + 1}.zip").write_bytes(code)
        (folder / "live").unlink(missing_ok=True)  # new code goes live
        versions.append(code)
    return versions


def _live_version(history_dir: Path | None, fn: Function, latest: str) -> str:
    if history_dir is None:
        return latest
    with contextlib.suppress(OSError, ValueError):
        live = (history_dir / fn.key / "live").read_text().strip()
        if 1 <= int(live) <= int(latest):
            return live
    return latest


def record_live_version(history_dir: Path, function_key: str, version: str) -> None:
    """Where `live` points after a rollback, for the next start."""
    folder = history_dir / function_key
    if folder.is_dir() and version.isdigit():
        (folder / "live").write_text(version)


# What else of a version the history keeps, beside its package `N.zip`, so that a restart
# brings back the versions AWS would still have, as they were:
#   N.json      its own settings (`configure` / `tune --apply` publish one with new ones)
#   N.deleted   it was deleted (a prune): published again at start, to keep the numbering,
#               then deleted again
VERSION_SETTINGS = ("MemorySize", "Timeout")


def record_version(history_dir: Path, function_key: str, version: str, code: bytes,
                   settings: dict[str, int]) -> None:
    """A version just published: its package and settings (kept once; a version is
    immutable)."""
    folder = history_dir / function_key
    folder.mkdir(parents=True, exist_ok=True)
    package, kept = folder / f"{version}.zip", folder / f"{version}.json"
    if not package.exists():
        package.write_bytes(code)
    if not kept.exists():
        kept.write_text(json.dumps({k: int(settings[k]) for k in VERSION_SETTINGS}))


def record_deleted_version(history_dir: Path, function_key: str, version: str) -> None:
    folder = history_dir / function_key
    if folder.is_dir() and version.isdigit():
        (folder / f"{version}.deleted").touch()


def _version_settings(history_dir: Path | None, fn: Function, version: int,
                      default: dict[str, int]) -> dict[str, int]:
    if history_dir is not None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            kept = json.loads((history_dir / fn.key / f"{version}.json").read_text())
            return {k: int(kept[k]) for k in VERSION_SETTINGS}
    return default


def _deleted_versions(history_dir: Path | None, fn: Function) -> list[str]:
    if history_dir is None:
        return []
    return sorted((p.stem for p in (history_dir / fn.key).glob("*.deleted")
                   if p.stem.isdigit()), key=int)


def _register_functions(session: Any, env: Environment, *, account: str,
                        dlq_urls: dict[str, str], dlq_arns: dict[str, str],
                        history_dir: Path | None) -> None:
    """Register the functions with the local Lambda API (moto) as the stack creates them, so
    `status`, `doctor` and the contract test see them as on AWS. Locally the dispatcher, not
    Lambda, invokes them."""
    iam = session.client("iam")
    lam = session.client("lambda")
    region = session.region_name
    tags = resource_tags(env.name)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole"}]})
    for fn in FUNCTIONS:
        role = iam.create_role(RoleName=fn.role_name(env.name), AssumeRolePolicyDocument=trust,
                               Description=fn.role_description(env.name),
                               Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        # The definition's role policies, as the template carries them
        # (tests/infra/test_local_policies.py); the emulator enforces them on the function's
        # own requests.
        for policy_name, document in role_policies(env, fn, region=region,
                                                   account=account).items():
            iam.put_role_policy(RoleName=fn.role_name(env.name), PolicyName=policy_name,
                                PolicyDocument=json.dumps(document))
        code = function_code(fn)
        history = _history(history_dir, fn, code)
        defined = {"MemorySize": env.memory(fn), "Timeout": env.timeout(fn)}
        settings = [_version_settings(history_dir, fn, n, defined)
                    for n in range(1, len(history) + 1)]
        name = fn.function_name(env.name)
        lam.create_function(
            FunctionName=name, Runtime=RUNTIME, Architectures=[env.architecture],
            Role=role["Role"]["Arn"], Handler=fn.handler,
            Code={"ZipFile": history[0]}, **settings[0],
            Description=f"{fn.description} - {env.name}",
            # Each function learns only its own dead-letter queue, as the stack sets it.
            Environment={"Variables": common_env(env, account=account,
                                                 dlq_urls={fn.key: dlq_urls[fn.key]})},
            TracingConfig={"Mode": "Active"},
            LoggingConfig={"LogFormat": "Text", "LogGroup": fn.log_group(env.name)},
            Tags=tags,
        )
        version = lam.publish_version(FunctionName=name)["Version"]
        for earlier, own in zip(history[1:], settings[1:], strict=True):
            lam.update_function_code(FunctionName=name, ZipFile=earlier)
            lam.update_function_configuration(FunctionName=name, **own)
            version = lam.publish_version(FunctionName=name)["Version"]
        live = _live_version(history_dir, fn, version)
        lam.create_alias(FunctionName=name, Name=LIVE_ALIAS, FunctionVersion=live,
                         Description=fn.alias_description(env.name))
        for deleted in _deleted_versions(history_dir, fn):  # pruned: gone, as on AWS
            if deleted != live and int(deleted) <= int(version):
                lam.delete_function(FunctionName=name, Qualifier=deleted)
        invocation = queues.async_invocation(env, fn)
        for qualifier in invocation.qualifiers:
            lam.put_function_event_invoke_config(
                FunctionName=name, Qualifier=qualifier,
                MaximumRetryAttempts=invocation.retry_attempts,
                MaximumEventAgeInSeconds=invocation.max_event_age_s,
                DestinationConfig={"OnFailure": {
                    "Destination": dlq_arns[invocation.on_failure_queue]}})
        if fn.key in env.reserved_concurrency:
            lam.put_function_concurrency(FunctionName=name,
                                         ReservedConcurrentExecutions=env.reserved_concurrency[fn.key])
        # As the stack does: the trigger may invoke the `live` alias (the notification or the
        # rule targets the alias ARN), not the unqualified function.
        if fn.trigger.kind == "s3":
            lam.add_permission(FunctionName=name, Qualifier=LIVE_ALIAS,
                               StatementId="s3-invoke",
                               Action="lambda:InvokeFunction", Principal="s3.amazonaws.com",
                               SourceArn=f"arn:aws:s3:::{env.images_bucket(account)}",
                               SourceAccount=account)
        elif fn.trigger.kind == "eventbridge":
            rule = rules.rule(env, fn)
            lam.add_permission(FunctionName=name, Qualifier=rule.target_qualifier,
                               StatementId="events-invoke",
                               Action="lambda:InvokeFunction", Principal="events.amazonaws.com",
                               SourceArn=rule.arn(region=region, account=account))


def _queue_arn(sqs: Any, url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
               ["Attributes"]["QueueArn"])


def _create_queues(sqs: Any, env: Environment, *, rule_arns: dict[str, str],
                   tags: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The environment's queues from their specs (`pipeline.queues`): (name -> URL,
    name -> ARN). A dead-letter queue is tagged as the stack tags it; a trigger queue exists
    only here."""
    urls, arns = {}, {}
    for spec in queues.queues(env, local=True):
        url = sqs.create_queue(QueueName=spec.name, Attributes=spec.attributes(),
                               **({} if spec.local_only else {"tags": tags}))["QueueUrl"]
        urls[spec.name], arns[spec.name] = url, _queue_arn(sqs, url)
        policy = spec.policy(arns[spec.name], rule_arns=rule_arns)
        if policy is not None:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    return urls, arns


def put_database_url(ssm: Any, env: Environment, database_url: str,
                     function_urls: dict[str, str] | None = None) -> None:
    """The parameters the local cloud writes (`parameters.provisioned_locally`): the owner's
    URL, and each function's own (function key -> URL) when given."""
    urls = {"DATABASE_URL": database_url, **{
        fn.database_url_name: (function_urls or {}).get(fn.key) for fn in FUNCTIONS}}
    for parameter in parameters.provisioned_locally(env):
        value = urls.get(parameter.holds)
        if value is not None:
            ssm.put_parameter(Name=parameter.name, Value=value, Overwrite=True,
                              Type="SecureString" if parameter.secure else "String")


def provision(session: Any, env: Environment, *, account: str,
              database_url: str | None, history_dir: Path | None = None,
              function_urls: dict[str, str] | None = None) -> Provisioned:
    """Create every resource; the DATABASE_URL parameter too when `database_url` is given,
    and the functions' own URLs with it (the supervisor puts them once the database is up,
    the two start side by side)."""
    s3 = session.client("s3")
    sqs = session.client("sqs")
    events = session.client("events")
    logs = session.client("logs")
    ssm = session.client("ssm")

    images, thumbs = env.images_bucket(account), env.thumbnails_bucket(account)
    for bucket in (images, thumbs):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=images, VersioningConfiguration={"Status": "Enabled"})

    region = session.region_name
    tags = resource_tags(env.name)
    rule_arns = {rule.name: rule.arn(region=region, account=account) for rule in rules.rules(env)}
    # By name: each function's dead-letter queue and (locally) its trigger queue, the
    # notification's or rule's target (see the module).
    urls, arns = _create_queues(sqs, env, rule_arns=rule_arns, tags=tags)
    dlq_urls = {fn.key: urls[fn.dlq_name(env.name)] for fn in FUNCTIONS}
    dlq_arns = {fn.dlq_name(env.name): arns[fn.dlq_name(env.name)] for fn in FUNCTIONS}
    queue_urls = {fn.key: urls[fn.queue_name(env.name)] for fn in FUNCTIONS}
    for fn in FUNCTIONS:
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=fn.log_group(env.name), tags=tags)
        logs.put_retention_policy(logGroupName=fn.log_group(env.name),
                                  retentionInDays=env.log_retention_days)

    for fn in FUNCTIONS:
        if fn.trigger.kind == "s3":
            s3.put_bucket_notification_configuration(
                Bucket=images,
                NotificationConfiguration={"QueueConfigurations": [{
                    "Id": fn.logical_id,
                    "QueueArn": arns[fn.queue_name(env.name)],
                    "Events": ["s3:ObjectCreated:*"],
                }]},
            )
    for rule in rules.rules(env):
        # The target is the function's trigger queue, not its `live` alias (see the module).
        target = arns[queues.trigger_queue(env, function(rule.function)).name]
        events.put_rule(Name=rule.name, EventPattern=json.dumps(rule.pattern()),
                        State=rule.state, Description=rule.description,
                        EventBusName=rule.event_bus,
                        Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        events.put_targets(Rule=rule.name, EventBusName=rule.event_bus, Targets=[{
            "Id": rule.target_id, "Arn": target,
            "DeadLetterConfig": {"Arn": arns[rule.dead_letter_queue]},
            "RetryPolicy": rule.retry_policy()}])

    if database_url:
        put_database_url(ssm, env, database_url, function_urls)
    _register_functions(session, env, account=account, dlq_urls=dlq_urls, dlq_arns=dlq_arns,
                        history_dir=history_dir)
    from collections_ops import stack_resources

    stack_resources.apply_lifecycle(s3, env, account)
    # The monitoring stack's alarms and dashboard, as AWS has them; the supervisor's monitor
    # evaluates the alarms (moto does not).
    cw = session.client("cloudwatch")
    stack_resources.ensure_alarms(cw, env)
    stack_resources.put_dashboard(cw, env, session.region_name, account=account)
    return Provisioned(images, thumbs, queue_urls, dlq_urls)
