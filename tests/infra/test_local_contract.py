"""The local cloud is what the CDK app synthesizes, as far as AWS's APIs can tell.

The queues, async-invocation settings, rules and parameters are spec objects of the definition
(`pipeline.queues`, `pipeline.rules`, `pipeline.parameters`) that the compute stack and the
local cloud's provisioning both render, and the roles' policies are `pipeline.permissions`'
(tests/infra/test_local_policies.py). What rendering can still get wrong is checked here:

- each spec, read back from the synthesized dev template and from a running local cloud, is
  what the spec says for that side (a local rule targets the function's trigger queue);
- everything not rendered from a spec -- functions and their configuration, aliases, resource
  policies and their qualifiers, the upload notification, buckets, roles, log groups, tags --
  is read through the emulator's AWS APIs and from the template into one shape, the template's
  intrinsic functions (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select/Fn::Split) resolved to
  the names and ARNs CloudFormation would give them. The two must be equal, except for what
  `DELIBERATE` lists, each entry with the values it allows on either side and the reason.

Before comparing, both sides are put in environment-neutral form (`Side.neutral`): the
environment's name in resource names becomes `<env>`, a per-environment setting (timeout,
memory, provider) becomes the setting's name when it is the value the definition gives that
environment, and a queue URL loses its endpoint host. A value that is not what the definition
says for its side stays as it is, and differs.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from collections_ops import pipeline
from collections_ops.localcloud.aws import iam
from collections_ops.localcloud.aws.policies import role_policies
from collections_ops.pipeline import parameters, queues, rules
from tests.e2e.cli import local_env, run
from tests.infra.support import TEST_ACCOUNT, SynthesizedApp

MISSING = "<missing>"


@dataclass(frozen=True)
class Deliberate:
    """A difference the local cloud makes on purpose: at observables matching `path`, AWS has a
    value matching `aws` and the local cloud one matching `local` (regular expressions over
    the value's JSON; MISSING: the observable does not exist on that side)."""

    path: str
    aws: str
    local: str
    why: str

    def allows(self, path: str, aws: Any, local: Any) -> bool:
        return fnmatch.fnmatchcase(path, self.path) and _matches(self.aws, aws) \
            and _matches(self.local, local)


def _matches(pattern: str, value: Any) -> bool:
    if pattern == MISSING or value is MISSING:
        return pattern == MISSING and value is MISSING
    return re.fullmatch(pattern, json.dumps(value)) is not None


ACCOUNT = TEST_ACCOUNT
FUNCTION_ARN = rf'"arn:aws:lambda:[a-z0-9-]+:{ACCOUNT}:function:collections-<env>-'
QUEUE_ARN = rf'"arn:aws:sqs:[a-z0-9-]+:{ACCOUNT}:collections-<env>-'

# The one table of deliberate differences (docs/local-cloud.md lists the same).
DELIBERATE: tuple[Deliberate, ...] = (
    Deliberate(
        "notification collections-images-<env>-*/0/target",
        aws=FUNCTION_ARN + r'ImageProcessorLambda:live"',
        local=QUEUE_ARN + r'ImageProcessorLambda-events"',
        why="moto cannot invoke a Lambda function: the upload notification goes to the "
            "processor's trigger queue, which the dispatcher drains into the handler of "
            "`live` -- the alias the stack's notification names."),
    Deliberate(
        "notification collections-images-<env>-*/0/kind",
        aws='"LambdaFunction"', local='"Queue"',
        why="the same: an SQS target locally, a Lambda target in AWS."),
    Deliberate(
        "* collections-<env>-OperationsLambda*", aws=".*", local=MISSING,
        why="the operations function is the in-VPC path to a private database; locally the "
            "database is on the loopback and the CLI's database commands connect to it."),
    Deliberate(
        "function OperationsLambda/*", aws=".*", local=MISSING,
        why="the operations function (see above)."),
    Deliberate(
        "* /aws/lambda/collections-<env>-OperationsLambda*", aws=".*", local=MISSING,
        why="the operations function's log group (see above)."),
    Deliberate(
        "permission */Sid", aws=MISSING, local='"(s3|events)-invoke"',
        why="CloudFormation names a permission's statement after the resource's physical id "
            "(generated at deploy time); locally the statement has a fixed id."),
)


# --------------------------------------------------------------------------- normal form


@dataclass(frozen=True)
class Side:
    """One environment's values, to make observables environment-neutral."""

    env: pipeline.Environment

    def neutral(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.neutral(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.neutral(v) for v in value]
        if not isinstance(value, str):
            return value
        name = re.escape(self.env.name)
        if value == self.env.name:
            return "<env>"
        value = re.sub(rf"https?://[^/]+/({ACCOUNT}/)", r"<queue-endpoint>/\1", value)
        value = re.sub(rf"(collections(?:-images|-thumbnails)?)-{name}-", r"\1-<env>-", value)
        # The environment's SSM scope (in ARNs and in SECRET_PARAMETERS).
        value = value.replace(f"{self.env.scope_prefix('env')}/", "<env-scope>/")
        return re.sub(rf" - {name}$", " - <env>", value)

    def setting(self, fn: pipeline.Function, field: str, value: Any) -> Any:
        """A timeout or memory size that is the environment's setting, by the setting's name."""
        key = fn.timeout_setting if field == "Timeout" else fn.memory_setting
        return f"<{key}>" if value == self.env.setting(key) else value

    def variables(self, values: dict[str, Any]) -> dict[str, Any]:
        """Function environment variables; a per-environment value by its setting's name."""
        other_env = pipeline.environment("dev" if self.env.is_local else "local")
        mine, other = common(self.env), Side(other_env).neutral(common(other_env))
        out = {}
        for key, value in values.items():
            per_environment = key in mine and self.neutral(mine[key]) != other.get(key)
            out[key] = f"<setting {key}>" if per_environment and value == mine[key] else value
        return self.neutral(out)


def common(env: pipeline.Environment) -> dict[str, str]:
    return pipeline.common_env(env, account=ACCOUNT)


def flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from flatten(item, f"{prefix}/{key}")
    elif isinstance(value, list) and value:
        for n, item in enumerate(value):
            yield from flatten(item, f"{prefix}/{n}")
    else:
        yield prefix, value


def observables(side: Side, resources: dict[str, Any]) -> dict[str, Any]:
    return {path: value for name, resource in resources.items()
            for path, value in flatten(side.neutral(resource), side.neutral(name))}


def differences(aws: dict[str, Any], local: dict[str, Any],
                deliberate: tuple[Deliberate, ...] = DELIBERATE) -> list[str]:
    """Every observable that differs and that no deliberate difference allows."""
    found = []
    for path in sorted(aws.keys() | local.keys()):
        a, b = aws.get(path, MISSING), local.get(path, MISSING)
        if a == b or any(d.allows(path, a, b) for d in deliberate):
            continue
        found.append(f"{path}: AWS {json.dumps(a)} != local {json.dumps(b)}")
    return found


# --------------------------------------------------------------------------- the template


class Resolver:
    """CloudFormation's intrinsic functions over one template, to names and ARNs."""

    def __init__(self, template: dict[str, Any], region: str) -> None:
        self.resources = template["Resources"]
        self.region = region

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                return self.get_att(*arg)
            if fn == "Fn::Join":
                return str(arg[0]).join(str(self(v)) for v in arg[1])
            if fn == "Fn::Select":
                return self(arg[1])[int(arg[0])]
            if fn == "Fn::Split":
                return str(self(arg[1])).split(arg[0])
            if fn == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(
                    self(names[m[1]]) if m[1] in names else
                    self.get_att(*m[1].split(".", 1)) if "." in m[1] else self.ref(m[1])),
                    text)
        return {k: self(v) for k, v in value.items()}

    def ref(self, name: str) -> Any:
        pseudo = {"AWS::Region": self.region, "AWS::AccountId": ACCOUNT,
                  "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
                  # The operations role's stack status grant (not in the local cloud).
                  "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT}:stack/<stack>"}
        if name in pseudo:
            return pseudo[name]
        resource = self.resources[name]
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT}/{props['QueueName']}"
        if kind == "AWS::Lambda::Alias":
            return f"{self.get_att(name, 'FunctionArn')}:{props['Name']}"
        if kind == "AWS::Lambda::Version":
            return f"{self.function_arn(props['FunctionName'])}:<published version>"
        named = {"AWS::Lambda::Function": "FunctionName", "AWS::IAM::Role": "RoleName",
                 "AWS::Logs::LogGroup": "LogGroupName", "AWS::Events::Rule": "Name",
                 "AWS::S3::Bucket": "BucketName"}
        if named.get(kind) not in props:
            return f"<generated name of {name}>"  # CloudFormation names it at deploy time
        return self(props[named[kind]])

    def function_arn(self, function: Any) -> str:
        name = self(function)
        if str(name).startswith("arn:"):
            return str(name)
        return f"arn:aws:lambda:{self.region}:{ACCOUNT}:function:{name}"

    def get_att(self, name: str, attribute: str) -> Any:
        resource = self.resources[name]
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::Lambda::Version" and attribute == "Version":
            return "<published version>"
        if kind == "AWS::Lambda::Alias" and attribute == "FunctionArn":
            return self.function_arn(props["FunctionName"])
        if attribute != "Arn":
            raise AssertionError(f"Fn::GetAtt {name}.{attribute} is not resolved here")
        ref = self.ref(name)
        return {
            "AWS::SQS::Queue": lambda: f"arn:aws:sqs:{self.region}:{ACCOUNT}:{props['QueueName']}",
            "AWS::Lambda::Function": lambda: self.function_arn(ref),
            "AWS::IAM::Role": lambda: f"arn:aws:iam::{ACCOUNT}:role/{ref}",
            "AWS::Logs::LogGroup": lambda: f"arn:aws:logs:{self.region}:{ACCOUNT}:log-group:{ref}:*",
            "AWS::Events::Rule": lambda: f"arn:aws:events:{self.region}:{ACCOUNT}:rule/{ref}",
            "AWS::S3::Bucket": lambda: f"arn:aws:s3:::{ref}",
        }[kind]()


def _tags(tags: list[dict[str, str]] | dict[str, str] | None) -> dict[str, str]:
    if isinstance(tags, dict):
        return dict(sorted(tags.items()))
    return dict(sorted((t["Key"], t["Value"]) for t in tags or []))


def _permission(principal: str, source_arn: Any, source_account: Any) -> dict[str, Any]:
    condition: dict[str, Any] = {}
    if source_arn is not None:
        condition["ArnLike"] = {"AWS:SourceArn": source_arn}
    if source_account is not None:
        condition["StringEquals"] = {"AWS:SourceAccount": source_account}
    return {"Action": "lambda:InvokeFunction", "Principal": {"Service": principal},
            "Effect": "Allow", "Condition": condition}


def template_observables(template: dict[str, Any], env: pipeline.Environment,
                         region: str) -> dict[str, Any]:
    side, resolve = Side(env), Resolver(template, region)
    by_type: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for logical_id, resource in template["Resources"].items():
        by_type.setdefault(resource["Type"], []).append(
            (logical_id, resolve(resource.get("Properties", {}))))
    functions = {props["FunctionName"]: fn for fn in pipeline.DEPLOYED_FUNCTIONS
                 for _, props in by_type["AWS::Lambda::Function"]
                 if props["FunctionName"] == fn.function_name(env.name)}
    out: dict[str, Any] = {}
    for _, props in by_type["AWS::Lambda::Function"]:
        fn = functions[props["FunctionName"]]
        out[f"function {fn.logical_id}"] = side.neutral({
            "Runtime": props["Runtime"], "Handler": props["Handler"],
            "Role": props["Role"], "Description": props.get("Description"),
            "Timeout": side.setting(fn, "Timeout", props["Timeout"]),
            "MemorySize": side.setting(fn, "MemorySize", props["MemorySize"]),
            "Environment": side.variables(props.get("Environment", {}).get("Variables", {})),
            "TracingConfig": props.get("TracingConfig", {}).get("Mode", "PassThrough"),
            "Architectures": props.get("Architectures", ["x86_64"]),
            "LogGroup": props.get("LoggingConfig", {}).get("LogGroup"),
            "ReservedConcurrency": props.get("ReservedConcurrentExecutions"),
            "Tags": _tags(props.get("Tags")),
        })
    for _, props in by_type.get("AWS::Lambda::Alias", []):
        name = str(props["FunctionName"]).rsplit(":", 1)[-1]
        out[f"alias {functions[name].logical_id}:{props['Name']}"] = side.neutral({
            "FunctionVersion": props["FunctionVersion"], "Description": props.get("Description")})
    for _, props in by_type.get("AWS::Lambda::Permission", []):
        target = resolve.function_arn(props["FunctionName"])
        name, _, qualifier = target.split(":function:", 1)[1].partition(":")
        out[f"permission {functions[name].logical_id}:{qualifier or '$LATEST'} "
            f"{props['Principal']}"] = side.neutral({
                "Resource": target, **_permission(props["Principal"], props.get("SourceArn"),
                                                  props.get("SourceAccount"))})
    out.update(_template_buckets_roles_and_logs(by_type))
    return observables(side, out)


def _template_buckets_roles_and_logs(by_type: dict[str, list[tuple[str, dict[str, Any]]]]
                                     ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _, props in by_type.get("AWS::S3::Bucket", []):
        if "BucketName" not in props:
            continue  # the access-log bucket: no name, no notification
        config = props.get("NotificationConfiguration", {})
        out[f"bucket {props['BucketName']}"] = {
            "Versioning": props.get("VersioningConfiguration", {}).get("Status")}
        out[f"notification {props['BucketName']}"] = [
            {"kind": "LambdaFunction", "target": c["Function"], "events": [c["Event"]],
             "filter": c.get("Filter")} for c in config.get("LambdaConfigurations", [])]
    for _, props in by_type["AWS::IAM::Role"]:
        out[f"role {props['RoleName']}"] = {
            "AssumeRolePolicyDocument": props["AssumeRolePolicyDocument"],
            "Description": props.get("Description"), "Tags": _tags(props.get("Tags"))}
    for _, props in by_type.get("AWS::Logs::LogGroup", []):
        out[f"log-group {props['LogGroupName']}"] = {
            "RetentionInDays": props.get("RetentionInDays"), "Tags": _tags(props.get("Tags"))}
    return out


# --------------------------------------------------------------------------- the local cloud


def local_observables(session: Any, env: pipeline.Environment) -> dict[str, Any]:
    """The same observables, read from the local cloud through the AWS APIs."""
    side = Side(env)
    lam = session.client("lambda")
    prefix = f"{pipeline.PROJECT}-{env.name}-"
    out: dict[str, Any] = {}
    ours = [f for f in lam.list_functions()["Functions"]
            if f["FunctionName"].startswith(prefix)]
    by_name = {fn.function_name(env.name): fn for fn in pipeline.DEPLOYED_FUNCTIONS}
    for config in ours:
        fn = by_name[config["FunctionName"]]
        name = config["FunctionName"]
        reserved = lam.get_function_concurrency(FunctionName=name)
        out[f"function {fn.logical_id}"] = {
            "Runtime": config["Runtime"], "Handler": config["Handler"],
            "Role": config["Role"], "Description": config.get("Description"),
            "Timeout": side.setting(fn, "Timeout", config["Timeout"]),
            "MemorySize": side.setting(fn, "MemorySize", config["MemorySize"]),
            "Environment": side.variables(config.get("Environment", {}).get("Variables", {})),
            "TracingConfig": config.get("TracingConfig", {}).get("Mode", "PassThrough"),
            "Architectures": config.get("Architectures", ["x86_64"]),
            "LogGroup": config.get("LoggingConfig", {}).get("LogGroup", fn.log_group(env.name)),
            "ReservedConcurrency": reserved.get("ReservedConcurrentExecutions"),
            "Tags": _tags(lam.list_tags(Resource=config["FunctionArn"])["Tags"]),
        }
        qualifiers = ["$LATEST"]
        for alias in lam.list_aliases(FunctionName=name)["Aliases"]:
            version = alias["FunctionVersion"]
            out[f"alias {fn.logical_id}:{alias['Name']}"] = {
                "FunctionVersion": "<published version>" if version.isdigit() else version,
                "Description": alias.get("Description")}
            qualifiers.append(alias["Name"])
        for qualifier in qualifiers:
            try:
                policy = json.loads(lam.get_policy(FunctionName=name, Qualifier=qualifier)
                                    ["Policy"] if qualifier != "$LATEST" else
                                    lam.get_policy(FunctionName=name)["Policy"])
            except lam.exceptions.ResourceNotFoundException:
                continue
            for statement in policy["Statement"]:
                # moto answers every qualifier with all of the function's statements; AWS
                # keeps a policy per qualifier, which the statement's resource names.
                _, _, named = statement["Resource"].split(":function:", 1)[1].partition(":")
                principal = statement["Principal"]["Service"]
                out[f"permission {fn.logical_id}:{named or '$LATEST'} {principal}"] = {
                    "Resource": statement["Resource"], "Sid": statement.get("Sid"),
                    "Action": statement["Action"], "Principal": statement["Principal"],
                    "Effect": statement["Effect"], "Condition": statement.get("Condition", {})}
    out.update(_local_buckets_roles_and_logs(session, env))
    return observables(side, out)


def _local_buckets_roles_and_logs(session: Any, env: pipeline.Environment) -> dict[str, Any]:
    s3, iam, logs = session.client("s3"), session.client("iam"), session.client("logs")
    prefix = f"{pipeline.PROJECT}-{env.name}-"
    out: dict[str, Any] = {}
    for bucket in (env.images_bucket(ACCOUNT), env.thumbnails_bucket(ACCOUNT)):
        versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status")
        out[f"bucket {bucket}"] = {"Versioning": versioning}
        config = s3.get_bucket_notification_configuration(Bucket=bucket)
        out[f"notification {bucket}"] = [
            {"kind": kind, "target": c[arn_key], "events": c["Events"],
             "filter": c.get("Filter")}
            for kind, key, arn_key in (
                ("LambdaFunction", "LambdaFunctionConfigurations", "LambdaFunctionArn"),
                ("Queue", "QueueConfigurations", "QueueArn"),
                ("Topic", "TopicConfigurations", "TopicArn"))
            for c in config.get(key, [])]
    for role in iam.list_roles()["Roles"]:
        if role["RoleName"].startswith(prefix):
            detail = iam.get_role(RoleName=role["RoleName"])["Role"]
            out[f"role {role['RoleName']}"] = {
                "AssumeRolePolicyDocument": detail["AssumeRolePolicyDocument"],
                "Description": detail.get("Description"), "Tags": _tags(detail.get("Tags"))}
    for group in logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{prefix}")["logGroups"]:
        arn = group["arn"].removesuffix(":*")
        out[f"log-group {group['logGroupName']}"] = {
            "RetentionInDays": group.get("retentionInDays"),
            "Tags": _tags(logs.list_tags_for_resource(resourceArn=arn).get("tags"))}
    return out


# ------------------------------------------------------------- the specs both sides render
#
# Each queue, async-invocation setting, rule and function's parameter lookup, in the shape the
# spec renders: what the spec says for a side (`expected`), what the template carries and
# what the local cloud answers must be equal, key by key.

SQS_DEFAULT_VISIBILITY_TIMEOUT = "30"


def _arns(env: pipeline.Environment, region: str) -> dict[str, str]:
    """Name -> ARN of the environment's queues and rules, and of the functions' aliases."""
    arns = {q.name: f"arn:aws:sqs:{region}:{ACCOUNT}:{q.name}"
            for q in queues.queues(env, local=True)}
    arns.update({r.name: r.arn(region=region, account=ACCOUNT) for r in rules.rules(env)})
    arns.update({f"{fn.function_name(env.name)}:{pipeline.LIVE_ALIAS}":
                 f"arn:aws:lambda:{region}:{ACCOUNT}:function:{fn.function_name(env.name)}"
                 f":{pipeline.LIVE_ALIAS}" for fn in pipeline.FUNCTIONS})
    return arns


def expected(env: pipeline.Environment, region: str, *, local: bool) -> dict[str, Any]:
    arns, tags = _arns(env, region), pipeline.resource_tags(env.name)
    out: dict[str, Any] = {}
    for queue in queues.queues(env, local=local):
        out[f"queue {queue.name}"] = {
            "Attributes": {"VisibilityTimeout": SQS_DEFAULT_VISIBILITY_TIMEOUT,
                           **queue.attributes()},
            "Policy": queue.policy(arns[queue.name], rule_arns=arns),
            "Tags": {} if queue.local_only else tags}
    for invocation in queues.async_invocations(env):
        for qualifier in invocation.qualifiers:
            out[f"invoke-config {invocation.function}:{qualifier}"] = {
                "MaximumRetryAttempts": invocation.retry_attempts,
                "MaximumEventAgeInSeconds": invocation.max_event_age_s,
                "OnFailure": arns[invocation.on_failure_queue]}
    for rule in rules.rules(env):
        # Locally the rule delivers to the function's trigger queue (moto cannot invoke Lambda).
        target = (queues.trigger_queue(env, pipeline.function(rule.function)).name if local
                  else f"{rule.target_function}:{rule.target_qualifier}")
        out[f"rule {rule.name}"] = {
            "EventPattern": rule.pattern(), "State": rule.state, "Description": rule.description,
            "EventBusName": rule.event_bus, "Tags": tags,
            "Targets": {rule.target_id: {
                "Arn": arns[target], "DeadLetterConfig": {"Arn": arns[rule.dead_letter_queue]},
                "RetryPolicy": rule.retry_policy()}}}
    for fn in pipeline.FUNCTIONS:
        out[f"parameters {fn.key}"] = parameters.lookup(env)
    return out


def template_specs(template: dict[str, Any], region: str) -> dict[str, Any]:
    resolve = Resolver(template, region)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in template["Resources"].values():
        by_type.setdefault(resource["Type"], []).append(resolve(resource.get("Properties", {})))
    key_of = {fn.function_name(env): fn.key for fn in pipeline.FUNCTIONS
              for env in pipeline.ENVIRONMENTS}
    policies = {str(q): p["PolicyDocument"] for p in by_type.get("AWS::SQS::QueuePolicy", [])
                for q in p["Queues"]}
    out: dict[str, Any] = {}
    for props in by_type.get("AWS::SQS::Queue", []):
        name = props["QueueName"]
        out[f"queue {name}"] = {
            "Attributes": {
                "MessageRetentionPeriod": str(props.get("MessageRetentionPeriod", 345600)),
                "SqsManagedSseEnabled": str(props.get("SqsManagedSseEnabled", True)).lower(),
                "VisibilityTimeout": str(props.get("VisibilityTimeout",
                                                   SQS_DEFAULT_VISIBILITY_TIMEOUT))},
            "Policy": policies.get(f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{name}"),
            "Tags": _tags(props.get("Tags"))}
    for props in by_type.get("AWS::Lambda::EventInvokeConfig", []):
        function = key_of[str(props["FunctionName"]).rsplit(":", 1)[-1]]
        out[f"invoke-config {function}:{props['Qualifier']}"] = {
            "MaximumRetryAttempts": props.get("MaximumRetryAttempts"),
            "MaximumEventAgeInSeconds": props.get("MaximumEventAgeInSeconds"),
            "OnFailure": props.get("DestinationConfig", {}).get("OnFailure", {})
            .get("Destination")}
    for props in by_type.get("AWS::Events::Rule", []):
        out[f"rule {props['Name']}"] = {
            "EventPattern": props["EventPattern"], "State": props.get("State"),
            "Description": props.get("Description"),
            "EventBusName": props.get("EventBusName", "default"), "Tags": _tags(props.get("Tags")),
            "Targets": {t["Id"]: {"Arn": t["Arn"], "DeadLetterConfig": t.get("DeadLetterConfig"),
                                  "RetryPolicy": t.get("RetryPolicy")}
                        for t in props.get("Targets", [])}}
    for props in by_type["AWS::Lambda::Function"]:
        if props["FunctionName"] in key_of:
            out[f"parameters {key_of[props['FunctionName']]}"] = json.loads(
                props["Environment"]["Variables"]["SECRET_PARAMETERS"])
    return out


def local_specs(session: Any, env: pipeline.Environment) -> dict[str, Any]:
    sqs, events, lam = session.client("sqs"), session.client("events"), session.client("lambda")
    prefix = f"{pipeline.PROJECT}-{env.name}-"
    out: dict[str, Any] = {}
    for url in sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        out[f"queue {url.rsplit('/', 1)[-1]}"] = {
            "Attributes": {key: attributes.get(key, "false") for key in (
                "MessageRetentionPeriod", "SqsManagedSseEnabled", "VisibilityTimeout")},
            "Policy": json.loads(attributes["Policy"]) if "Policy" in attributes else None,
            "Tags": _tags(sqs.list_queue_tags(QueueUrl=url).get("Tags"))}
    for fn in pipeline.FUNCTIONS:
        name = fn.function_name(env.name)
        for qualifier in ("$LATEST", pipeline.LIVE_ALIAS):
            with contextlib.suppress(lam.exceptions.ResourceNotFoundException):
                invoke = lam.get_function_event_invoke_config(FunctionName=name,
                                                              Qualifier=qualifier)
                out[f"invoke-config {fn.key}:{qualifier}"] = {
                    "MaximumRetryAttempts": invoke.get("MaximumRetryAttempts"),
                    "MaximumEventAgeInSeconds": invoke.get("MaximumEventAgeInSeconds"),
                    "OnFailure": invoke.get("DestinationConfig", {}).get("OnFailure", {})
                    .get("Destination")}
        variables = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
        out[f"parameters {fn.key}"] = json.loads(variables["SECRET_PARAMETERS"])
    for rule in events.list_rules(NamePrefix=prefix)["Rules"]:
        out[f"rule {rule['Name']}"] = {
            "EventPattern": json.loads(rule["EventPattern"]), "State": rule.get("State"),
            "Description": rule.get("Description"), "EventBusName": rule.get("EventBusName"),
            "Tags": _tags(events.list_tags_for_resource(ResourceARN=rule["Arn"])["Tags"]),
            "Targets": {t["Id"]: {"Arn": t["Arn"], "DeadLetterConfig": t.get("DeadLetterConfig"),
                                  "RetryPolicy": t.get("RetryPolicy")}
                        for t in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]}}
    return out


def spec_differences(wanted: dict[str, Any], found: dict[str, Any]) -> list[str]:
    return [f"{key}: the spec says {json.dumps(wanted.get(key, MISSING))}, "
            f"found {json.dumps(found.get(key, MISSING))}"
            for key in sorted(wanted.keys() | found.keys())
            if wanted.get(key, MISSING) != found.get(key, MISSING)]


# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def local_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("contract")
    env = local_env(root / "state")
    try:
        started = run(env, "deploy", "local")
        assert started.returncode == 0, started.stderr
        status = json.loads(run(env, "status", "--json").stdout)
        session = iam.admin_session(status["state_dir"], status["region"])
        yield {"status": status, "session": _Endpoint(session, status["endpoint_url"])}
    finally:
        run(env, "destroy", "local", "--yes")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class _Endpoint:
    session: Any
    endpoint_url: str

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url)


@pytest.fixture(scope="module")
def sides(existing_db_app: SynthesizedApp, local_cloud: dict[str, Any]
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    region = local_cloud["status"]["region"]
    aws = template_observables(existing_db_app.template_json("dev", "Compute"),
                               pipeline.environment("dev"), region)
    local = local_observables(local_cloud["session"], pipeline.environment("local"))
    return aws, local


def test_the_local_cloud_is_the_synthesized_stack_but_for_the_deliberate_differences(sides):
    found = differences(*sides)
    assert not found, "the local cloud differs from the dev template:\n" + "\n".join(found)


def test_the_template_and_the_local_cloud_carry_the_same_specs(existing_db_app, local_cloud):
    """Queues, async-invocation settings, rules and parameter lookups: each side renders the
    definition's spec objects, and each rendering reads back as its spec says."""
    region = local_cloud["status"]["region"]
    template = template_specs(existing_db_app.template_json("dev", "Compute"), region)
    local = local_specs(local_cloud["session"], pipeline.environment("local"))
    assert spec_differences(expected(pipeline.environment("dev"), region, local=False),
                            template) == []
    assert spec_differences(expected(pipeline.environment("local"), region, local=True),
                            local) == []


def test_the_local_roles_carry_the_definitions_policies(local_cloud):
    """The roles' inline policies as the local cloud put them are `pipeline.permissions`'
    rendered for it (tests/infra/test_local_policies.py holds that rendering equal to the
    template's)."""
    session, env = local_cloud["session"], pipeline.environment("local")
    client = session.client("iam")
    for fn in pipeline.FUNCTIONS:
        role = fn.role_name(env.name)
        put = {name: client.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
               for name in client.list_role_policies(RoleName=role)["PolicyNames"]}
        assert put == role_policies(env, fn, region=local_cloud["status"]["region"],
                                    account=ACCOUNT), fn.key


def test_a_rendering_that_departs_from_its_spec_is_reported(local_cloud):
    """GIVEN the local cloud as its specs say, WHEN a dead-letter queue keeps messages for
    4 days instead of 14, THEN the comparison names exactly that queue."""
    session, env = local_cloud["session"], pipeline.environment("local")
    sqs, name = session.client("sqs"), pipeline.ANALYZER.dlq_name(env.name)
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "345600"})
    try:
        found = spec_differences(expected(env, local_cloud["status"]["region"], local=True),
                                 local_specs(session, env))
    finally:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={
            "MessageRetentionPeriod": str(pipeline.DLQ_RETENTION_S)})
    assert [f.split(":", 1)[0] for f in found] == [f"queue {name}"]


def test_every_deliberate_difference_is_still_one(sides):
    """A table entry that no longer matches anything is stale: the difference was fixed (or
    moved) and the table would hide the next one."""
    aws, local = sides
    paths = aws.keys() | local.keys()
    for entry in DELIBERATE:
        assert any(entry.allows(p, aws.get(p, MISSING), local.get(p, MISSING)) for p in paths
                   if aws.get(p, MISSING) != local.get(p, MISSING)), entry.path


def test_a_changed_observable_is_reported(local_cloud, sides):
    """GIVEN the local cloud equal to the template, WHEN one function gets a reserved
    concurrency AWS would not have, THEN the comparison names exactly that observable."""
    aws, _ = sides
    session, env = local_cloud["session"], pipeline.environment("local")
    lam = session.client("lambda")
    name = pipeline.EMBEDDER.function_name(env.name)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)
    try:
        changed = local_observables(session, env)
    finally:
        lam.delete_function_concurrency(FunctionName=name)
    assert differences(aws, changed) == [
        "function EmbedderLambda/ReservedConcurrency: AWS null != local 3"]


def test_a_deliberate_difference_allows_only_what_it_names(sides):
    """The notification's target may be the processor's trigger queue, not any queue."""
    aws, local = (dict(s) for s in sides)
    [path] = [p for p in local if fnmatch.fnmatchcase(p, "notification *images*/0/target")]
    local[path] = local[path].replace("ImageProcessorLambda-events", "AnalyzerLambda-events")
    assert differences(aws, local) == [
        f"{path}: AWS {json.dumps(aws[path])} != local {json.dumps(local[path])}"]
