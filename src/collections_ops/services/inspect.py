"""The guide's Step 4 ("verify deployment") and Troubleshooting section, as data.

`gather_status` reads what is deployed: functions, rules and targets, the bucket notification,
dead-letter queue depths, parameters. `doctor` turns the troubleshooting steps into checks,
each passed or failed with the fix. Both work the same against the local cloud and AWS: they
only take a `client(service)` factory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from collections_ops import aws
from collections_ops.checks import Check
from collections_ops.pipeline import FUNCTIONS, LIVE_ALIAS, Environment, Function
from collections_ops.target import for_environment

ClientFactory = Callable[[str], Any]




@dataclass
class FunctionStatus:
    key: str
    name: str
    exists: bool
    state: str | None = None
    runtime: str | None = None
    memory: int | None = None
    timeout: int | None = None
    last_modified: str | None = None
    log_group: str | None = None
    reserved_concurrency: int | None = None


@dataclass
class RuleStatus:
    name: str
    exists: bool
    enabled: bool = False
    pattern: dict[str, Any] | None = None
    targets: list[str] = field(default_factory=list)


@dataclass
class StatusReport:
    env: str
    region: str
    account: str
    images_bucket: str
    functions: list[FunctionStatus]
    rules: list[RuleStatus]
    notification: dict[str, Any] | None
    dead_letter_depths: dict[str, int | None]
    parameters: dict[str, bool]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def function_status(lam: Any, env: Environment, fn: Function) -> FunctionStatus:
    name = fn.function_name(env.name)
    cfg = aws.or_none(lambda: lam.get_function_configuration(FunctionName=name))
    if cfg is None:
        return FunctionStatus(fn.key, name, False)
    # An identity that may not read the reservation sees none, as for an unreserved function.
    concurrency = aws.or_none(lambda: lam.get_function_concurrency(FunctionName=name),
                              *aws.NOT_FOUND_CODES, *aws.ACCESS_DENIED_CODES)
    reserved = (concurrency or {}).get("ReservedConcurrentExecutions")
    return FunctionStatus(
        fn.key, name, True, cfg.get("State", "Active"), cfg.get("Runtime"),
        cfg.get("MemorySize"), cfg.get("Timeout"), cfg.get("LastModified"),
        log_group_of(cfg), reserved)


def log_group_of(cfg: dict[str, Any]) -> str:
    """The function's log group from its logging configuration; Lambda's default otherwise."""
    group = (cfg.get("LoggingConfig") or {}).get("LogGroup")
    return str(group) if group else f"/aws/lambda/{cfg['FunctionName']}"


def rule_status(events: Any, name: str) -> RuleStatus:
    rule = aws.or_none(lambda: events.describe_rule(Name=name))
    if rule is None:
        return RuleStatus(name, False)
    targets = events.list_targets_by_rule(Rule=name).get("Targets", [])
    pattern = json.loads(rule["EventPattern"]) if rule.get("EventPattern") else None
    return RuleStatus(name, True, rule.get("State") == "ENABLED", pattern,
                      [t["Arn"] for t in targets])


def queue_depth(sqs: Any, name: str) -> int | None:
    def attributes() -> dict[str, Any]:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return dict(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages"])["Attributes"])

    attrs = aws.or_none(attributes)
    if attrs is None:
        return None
    return int(attrs.get("ApproximateNumberOfMessages", 0))


def notification(s3: Any, bucket: str) -> dict[str, Any] | None:
    cfg = aws.or_none(lambda: s3.get_bucket_notification_configuration(Bucket=bucket))
    if cfg is None:
        return None
    cfg.pop("ResponseMetadata", None)
    return dict(cfg)


def present_parameters(ssm: Any, env: Environment) -> dict[str, bool]:
    from collections_ops.pipeline import SECRETS

    names = [env.parameter_name(s.name) for s in SECRETS]
    found: set[str] = set()
    for start in range(0, len(names), 10):
        response = ssm.get_parameters(Names=names[start:start + 10], WithDecryption=False)
        found.update(p["Name"] for p in response.get("Parameters", []))
    return {n: n in found for n in names}


def gather_status(client: ClientFactory, env: Environment, *, account: str,
                  region: str) -> StatusReport:
    lam, events, sqs = client("lambda"), client("events"), client("sqs")
    bucket = env.images_bucket(account)
    return StatusReport(
        env=env.name, region=region, account=account, images_bucket=bucket,
        functions=[function_status(lam, env, fn) for fn in FUNCTIONS],
        rules=[rule_status(events, name) for fn in FUNCTIONS
               if (name := fn.rule_name(env.name)) is not None],
        notification=notification(client("s3"), bucket),
        dead_letter_depths={fn.dlq_name(env.name): queue_depth(sqs, fn.dlq_name(env.name))
                            for fn in FUNCTIONS},
        parameters=present_parameters(client("ssm"), env),
    )


# --------------------------------------------------------------------------- doctor


Finding = Check  # doctor's findings are the shared check type


def _notification_targets(cfg: dict[str, Any]) -> list[str]:
    targets = []
    for key, arn_key in (("LambdaFunctionConfigurations", "LambdaFunctionArn"),
                         ("QueueConfigurations", "QueueArn"),
                         ("TopicConfigurations", "TopicArn")):
        targets += [c.get(arn_key, "") for c in cfg.get(key, [])]
    if cfg.get("EventBridgeConfiguration") is not None:
        targets.append("eventbridge")
    return targets


def expected_target(fn: Function, env: Environment, *, account: str, region: str) -> str:
    """The ARN a trigger of `fn` must name (the target's: on AWS the `live` alias)."""
    return for_environment(env).trigger_arn(fn, account=account, region=region)


def check_notification(status: StatusReport, env: Environment) -> Finding:
    processor = next(f for f in FUNCTIONS if f.trigger.kind == "s3")
    expected = expected_target(processor, env, account=status.account, region=status.region)
    fix = (f"redeploy: `collections deploy {env.name}` (the compute stack owns the bucket "
           "notification)")
    if status.notification is None:
        return Finding("bucket notification", False, f"bucket {status.images_bucket} not found",
                       fix)
    targets = _notification_targets(status.notification)
    if expected in targets:
        return Finding("bucket notification", True,
                       f"s3:ObjectCreated on {status.images_bucket} -> {expected}")
    detail = ("no notification configured" if not targets
              else f"notification points at {', '.join(targets)}, not {expected}")
    return Finding("bucket notification", False, detail, fix)


def _s3_may_invoke(policy: dict[str, Any]) -> bool:
    return any((s.get("Principal") or {}).get("Service") == "s3.amazonaws.com"
               and s.get("Effect") == "Allow" for s in policy.get("Statement", []))


def _policy(lam: Any, name: str, qualifier: str | None) -> dict[str, Any] | None:
    kwargs = {"FunctionName": name, **({"Qualifier": qualifier} if qualifier else {})}
    policy = aws.or_none(lambda: lam.get_policy(**kwargs))
    return None if policy is None else dict(json.loads(policy["Policy"]))


def check_invoke_permission(lam: Any, env: Environment) -> Finding:
    """S3 invokes the `live` alias, so the permission must be on the alias (a resource policy
    on the unqualified function does not cover it: `get-policy --qualifier live`)."""
    processor = next(f for f in FUNCTIONS if f.trigger.kind == "s3")
    name = processor.function_name(env.name)
    fix = f"redeploy: `collections deploy {env.name}`"
    on_alias = _policy(lam, name, LIVE_ALIAS)
    if on_alias is not None and _s3_may_invoke(on_alias):
        return Finding("invoke permission", True, f"S3 may invoke {name}:{LIVE_ALIAS}")
    on_function = _policy(lam, name, None)
    if on_function is not None and _s3_may_invoke(on_function):
        if not for_environment(env).invoke_permission_on_alias():
            return Finding("invoke permission", True, f"S3 may invoke {name}")
        return Finding("invoke permission", False,
                       f"S3 may invoke {name}, but the notification invokes "
                       f"{name}:{LIVE_ALIAS}, which has no such permission", fix)
    if on_alias is None and on_function is None:
        return Finding("invoke permission", False, f"{name} has no resource policy", fix)
    return Finding("invoke permission", False,
                   f"S3 is not allowed to invoke {name}:{LIVE_ALIAS}", fix)


def check_role_policies(iam: Any, env: Environment, *, account: str,
                        region: str) -> list[Finding]:

    findings = []
    for fn in FUNCTIONS:
        role = fn.role_name(env.name)
        inline = aws.or_none(partial(iam.get_role_policy, RoleName=role,
                                     PolicyName="ParameterStorePolicy"))
        if inline is None:
            findings.append(Finding(f"IAM {role}", False, "no ParameterStorePolicy on the role",
                                    f"redeploy: `collections deploy {env.name}`"))
            continue
        doc = inline["PolicyDocument"]
        if isinstance(doc, str):
            from urllib.parse import unquote

            doc = json.loads(unquote(doc))
        resources: set[str] = set()
        for statement in doc.get("Statement", []):
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            if statement.get("Effect") == "Allow" and any(
                    a in ("ssm:GetParameter", "ssm:GetParameters", "ssm:*") for a in actions):
                res = statement.get("Resource", [])
                resources.update([res] if isinstance(res, str) else res)
        needed = [f"arn:aws:ssm:{region}:{account}:parameter{parameter}"
                  for n in fn.secrets for parameter in env.parameter_lookup(n)]
        missing = [n for n in needed if n not in resources]
        # A pipeline function connects as its own role: the owner's URL is not for it.
        owner = f"arn:aws:ssm:{region}:{account}:parameter{env.parameter_name('DATABASE_URL')}"
        too_much = owner in resources or any(r.endswith(":parameter/*") or r == "*"
                                             for r in resources)
        detail = ("may read its parameters" if not missing else
                  f"cannot read {', '.join(m.rpartition(':parameter')[2] for m in missing)}")
        if too_much:
            detail = f"may read the owner's {env.parameter_name('DATABASE_URL')}"
        findings.append(Finding(
            f"IAM {role}", not missing and not too_much, detail,
            None if not missing and not too_much
            else f"redeploy: `collections deploy {env.name}`"))
    return findings


def check_parameters(status: StatusReport, env: Environment) -> list[Finding]:
    findings = []
    needed = {env.parameter_name(s.name) for s in env.required_secrets()}
    # The owner's URL: a secret the operator puts on AWS, written by the local cloud itself.
    needed.add(env.parameter_name("DATABASE_URL"))
    # Each function's own database URL, which every migration writes (the local cloud's
    # start, the operations function's migrate, `db migrate` on a direct route).
    own_urls = {env.parameter_name(fn.database_url_name): fn for fn in FUNCTIONS}
    for name, present in status.parameters.items():
        short = name.rpartition("/")[2]
        if name in own_urls:
            fn = own_urls[name]
            fix = for_environment(env).role_urls_fix()
            findings.append(Finding(
                f"parameter {name}", present,
                f"present: the {fn.key}'s own database role" if present else
                f"missing: the {fn.key} cannot connect to the database", None if present
                else f"{fix} (writes it)"))
        elif name in needed:
            findings.append(Finding(f"parameter {name}", present,
                                    "present" if present else "missing (required)",
                                    None if present else f"collections secrets put {short} "
                                    f"--env {env.name}"))
        elif not present:
            findings.append(Finding(f"parameter {name}", True, "not set (optional)"))
    return findings


def check_functions_and_rules(status: StatusReport, env: Environment) -> list[Finding]:
    findings = []
    for f in status.functions:
        ok = f.exists and f.state in ("Active", None)
        findings.append(Finding(f"function {f.name}", ok,
                                f"{f.state}, {f.runtime}, {f.memory} MB, {f.timeout} s"
                                if f.exists else "not deployed",
                                None if ok else f"collections deploy {env.name}"))
    triggered = {fn.rule_name(env.name): fn for fn in FUNCTIONS}
    for r in status.rules:
        expected = expected_target(triggered[r.name], env, account=status.account,
                                   region=status.region) if r.name in triggered else None
        aimed = expected is None or expected in r.targets
        ok = r.exists and r.enabled and bool(r.targets) and aimed
        detail = ("not found" if not r.exists else "disabled" if not r.enabled
                  else "no targets" if not r.targets
                  else f"targets {', '.join(r.targets)}, not {expected}" if not aimed
                  else f"enabled -> {', '.join(r.targets)}")
        fix = None if ok else (f"aws events enable-rule --name {r.name}" if r.exists
                               and not r.enabled else f"collections deploy {env.name}")
        findings.append(Finding(f"rule {r.name}", ok, detail, fix))
    for queue, depth in status.dead_letter_depths.items():
        findings.append(Finding(f"dead-letter queue {queue}", depth == 0,
                                "missing" if depth is None else f"{depth} message(s)",
                                None if depth == 0 else "inspect the failed events and replay "
                                "them once fixed", "error" if depth is None else "warning"))
    return findings


def check_database(route: Callable[[], Any]) -> list[Finding]:
    """The database checks, through whichever route reaches it (`services.dataroute`)."""
    try:
        chosen = route()
        answer = chosen.database_check()
    except Exception as exc:
        message = getattr(exc, "message", None) or str(exc).splitlines()[0]
        return [Finding("database", False, message,
                        getattr(exc, "hint", None) or "check DATABASE_URL and network access "
                        "(the database security group must allow this client)")]
    findings = [Finding("database", True, f"reachable ({chosen.description})")]
    vector = answer.get("vector")
    findings.append(Finding("pgvector extension", vector is not None,
                            f"vector {vector}" if vector else "not installed",
                            None if vector else "collections db migrate"))
    pending = list(answer.get("pending") or [])
    findings.append(Finding("schema", not pending,
                            "migrated" if not pending else f"pending: {', '.join(pending)}",
                            None if not pending else "collections db migrate"))
    return findings


def doctor(client: ClientFactory, env: Environment, *, account: str, region: str,
           route: Callable[[], Any]) -> list[Finding]:
    status = gather_status(client, env, account=account, region=region)
    findings = [check_notification(status, env), check_invoke_permission(client("lambda"), env)]
    findings += check_role_policies(client("iam"), env, account=account, region=region)
    findings += check_parameters(status, env)
    findings += check_functions_and_rules(status, env)
    findings += check_database(route)
    return findings
