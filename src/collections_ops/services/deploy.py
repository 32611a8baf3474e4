"""Deploying to AWS: preflight checks, then the pinned CDK CLI on the shipped CDK app.

Which `cdk` runs: $COLLECTIONS_CDK, else a `cdk` on PATH (the operator's choice), else the
pinned CLI in infrastructure/node_modules, else the pinned version installed once with `npm ci`
into the state folder from the shipped package-lock.json. The app always runs with this
interpreter (`--app "<python> app.py"`), so an installed `collections` needs nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collections_ops import aws, errors, paths
from collections_ops import settings as operator_settings
from collections_ops.checks import Check
from collections_ops.pipeline import DEPLOYED_FUNCTIONS, FUNCTIONS, Environment, Secret

if TYPE_CHECKING:
    from collections_ops.services.deployment import DeploymentRecord
    from collections_ops.services.leftovers import Leftover

BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
APPROVALS = ("never", "broadening", "any-change")


@dataclass(frozen=True)
class CdkInvocation:
    argv: list[str]
    cwd: Path
    env: dict[str, str]


def stacks_for(env: Environment, *, database: str = "existing") -> list[str]:
    stacks = [env.stack_name("Compute"), env.stack_name("Monitoring")]
    if database == "rds":
        stacks.insert(0, env.stack_name("Database"))
    return stacks


def pinned_version(infra: Path) -> str:
    data = json.loads((infra / "package.json").read_text())
    return str(data["devDependencies"]["aws-cdk"])


def find_cdk(infra: Path, cache_root: Path) -> list[str]:
    override = os.environ.get("COLLECTIONS_CDK")
    if override:
        return override.split()
    on_path = shutil.which("cdk")
    if on_path:
        return [on_path]
    local = infra / "node_modules" / ".bin" / "cdk"
    if local.exists():
        return [str(local)]
    version = pinned_version(infra)
    cached = cache_root / f"aws-cdk-{version}"
    binary = cached / "node_modules" / ".bin" / "cdk"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise errors.ConfigError("the CDK CLI is not installed and npm is not available",
                                     "install Node.js 20+ (npm), or set COLLECTIONS_CDK")
        cached.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(infra / name, cached / name)
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                                cwd=cached, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            raise errors.Failed(f"installing the CDK CLI {version} failed: "
                                f"{result.stderr.strip().splitlines()[-1:]}",
                                "check npm's access to its registry")
    return [str(binary)]


def invocation(command: list[str], *, env: Environment, profile: str | None,
               region: str | None, bundle_dir: Path | None, out_dir: Path,
               cache_root: Path, extra_context: dict[str, str] | None = None) -> CdkInvocation:
    infra = paths.infrastructure_root()
    argv = [*find_cdk(infra, cache_root), *command,
            "--app", f"{sys.executable} app.py", "--output", str(out_dir)]
    context = {"collections:environments": env.name, **(extra_context or {})}
    if bundle_dir is not None:
        context["collections:bundleDir"] = str(bundle_dir)
    for key, value in context.items():
        argv += ["-c", f"{key}={value}"]
    if profile:
        argv += ["--profile", profile]
    process_env = dict(os.environ)
    process_env.update({"CDK_DISABLE_TELEMETRY": "true",
                        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"})
    process_env.setdefault("CDK_HOME", str(cache_root / "cdk-home"))
    if region:
        process_env["AWS_REGION"] = process_env["AWS_DEFAULT_REGION"] = region
    # The app imports this package and aws-cdk-lib: run it with this interpreter's path.
    process_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent),
                                           process_env.get("PATH", "")])
    if os.environ.get("CI"):
        argv += ["--ci", "--progress", "events"]
    return CdkInvocation(argv, infra, process_env)


def cdk(command: list[str], *, env: Environment, state_root: Path, profile: str | None,
        region: str | None, record: DeploymentRecord, bundle: bool = True,
        pin_account: bool = False) -> CdkInvocation:
    """The CDK command for an environment as `record` describes it (database mode, VPC
    placement), with this install's state folders; `pin_account`: the record's account is
    the app's, not left to AWS::AccountId. The CDK app imports aws-cdk-lib: without the
    `[infra]` extra, say so before running anything."""
    import importlib.util

    from collections_ops.services import deployment

    if importlib.util.find_spec("aws_cdk") is None:
        raise errors.MissingExtra("the CDK app needs the `infra` extra (aws-cdk-lib is not "
                                  "installed)", "pip install 'collections-ops[infra]'")
    bundle_dir = bundle_dir_for(state_root, env)
    return invocation(command, env=env, profile=profile, region=region,
                      bundle_dir=bundle_dir if bundle and bundle_dir.is_dir() else None,
                      out_dir=state_root / "cdk.out" / env.name, cache_root=state_root / "tools",
                      extra_context={**deployment.cdk_context(record), **(
                          {"collections:account": record.account}
                          if pin_account and record.account else {})})


def bundle_dir_for(state_root: Path, env: Environment) -> Path:
    return state_root / "build" / env.name


def recorded(client: Any, env: Environment, state_dir: Path, *, database: str | None = None,
             file: Mapping[str, Any] | None = None) -> DeploymentRecord:
    """What the environment is, for commands that act on what was deployed: the deployment
    record (the account's, else the local copy), `--database` over it -- and for `diff`, what
    a deploy would make of it, the settings `file` over the record."""
    return planned(client, env, state_dir, database=database, file=file)[0]


def planned(client: Any, env: Environment, state_dir: Path, *, database: str | None = None,
            file: Mapping[str, Any] | None = None,
            ) -> tuple[DeploymentRecord, operator_settings.Effective]:
    """`recorded`, with each setting's value and where it came from (`status`, `diff`)."""
    from collections_ops.services import deployment

    previous = deployment.in_account(state_dir, env, ssm=client("ssm"))
    record = deployment.plan(env, previous, database=database, file=file)
    return record, deployment.effective(env, previous, file=file, flags=(
        {"database": database} if database else None))


@dataclass(frozen=True)
class DeployPlan:
    """What `deploy` found before running CDK, and the CDK command it would run."""

    record: DeploymentRecord  # what this deploy makes of the environment
    changes: list[str]  # how that differs from the previous deployment, in words
    built: list[Any]  # the bundles built (`build.BundleReport`); empty with build=False
    checks: list[Check]
    invocation: CdkInvocation
    # Retained resources an earlier deploy left that CloudFormation adopts (leftovers.py).
    adopted: list[Leftover] = field(default_factory=list)
    # Stacks of the environment the app no longer has: removed once the deploy succeeded.
    removes: list[str] = field(default_factory=list)
    # Run before `invocation`: the compute stack alone, when it must stop importing a value
    # of the database stack before that stack can stop exporting it (`drops_an_import`).
    first: CdkInvocation | None = None
    # Run once `invocation` succeeded: an import keeps a resource as it was, so a second,
    # drift-reverting deploy of the stack that adopted it applies the template's configuration.
    then: CdkInvocation | None = None


def deploy(client: Any, env: Environment, *, state_root: Path, state_dir: Path,
           profile: str | None, all_stacks: bool, approval: str, database: str | None = None,
           subnet_ids: Sequence[str] = (), security_group_ids: Sequence[str] = (),
           region: str | None = None, account: str | None = None,
           build: bool = True, file: Mapping[str, Any] | None = None,
           flags: Mapping[str, Any] | None = None, revert_drift: bool = False) -> DeployPlan:
    """Plan the deployment record (the options and `flags` given, else the settings `file`,
    else what was deployed before, else the definition `env`), build the bundles, run the
    preflight checks, and return them with the `cdk deploy` invocation (`revert_drift`: one
    that also puts resources changed outside CloudFormation back to the template);
    the caller shows the checks and runs the invocation only when none failed. The caller has
    checked the credentials: nothing here is worth building without them."""
    from collections_ops.services import deployment, layout, leftovers

    if approval not in APPROVALS:
        raise errors.UsageError(f"--require-approval {approval!r} is not one of "
                                f"{', '.join(APPROVALS)}")
    # The first SSM layout's parameters are copied into the environment's scope before
    # anything reads them there; the old ones go once the deploy has succeeded (`deployed`).
    moved = [m.sentence() for m in layout.copy_forward(client("ssm"), env)]
    previous = deployment.in_account(state_dir, env, ssm=client("ssm"))
    record = deployment.plan(env, previous, database=database, subnet_ids=subnet_ids,
                             security_group_ids=security_group_ids, region=region,
                             account=account, file=file, flags=flags)
    before = deployment.environment_of(env, previous) if previous is not None else None
    env = deployment.environment_of(env, record)  # the settings this deploy deploys
    built: list[Any] = []
    if build:
        from collections_ops.services import build as building
        from collections_ops.services.bundle_deps import PLATFORMS

        # For the architecture this deploy deploys (the definition's may differ).
        built = building.build(env.name, out_dir=bundle_dir_for(state_root, env),
                               platform=PLATFORMS[env.architecture])
    checks = preflight(client, env, bundle_dir=bundle_dir_for(state_root, env), record=record)
    account = record.account or str(client("sts").get_caller_identity()["Account"])
    adopted = leftovers.find(client, env, account)
    checks.append(leftovers.check(adopted))
    removes = leftovers.stale_stacks(client("cloudformation"), env,
                                     stacks_for(env, database=record.database))
    checks += [check for stack in removes for check in removal_checks(client, env, stack)]
    targets = ["--all"] if all_stacks else stacks_for(env, database=record.database)
    first, inv, then = _invocations(
        partial(cdk, env=env, state_root=state_root, profile=profile, region=record.region,
                record=replace(record, account=account)),
        targets, approval=approval, adopted=adopted, revert_drift=revert_drift,
        compute_first=env.stack_name("Compute") if drops_an_import(before, env, previous,
                                                                    record) else None)
    return DeployPlan(record, [*moved, *deployment.changes(previous, record)], built, checks,
                      inv, adopted=adopted, removes=removes, first=first, then=then)


def _invocations(run_cdk: Any, targets: list[str], *, approval: str, adopted: list[Leftover],
                 revert_drift: bool, compute_first: str | None,
                 ) -> tuple[CdkInvocation | None, CdkInvocation, CdkInvocation | None]:
    """The `cdk deploy` runs of one deploy, in order: the compute stack alone (when it must
    stop importing what the database stack stops exporting), the deploy itself, and after an
    adoption, the drift-reverting deploy of the stacks that adopted something."""
    adopting = [found for found in adopted if found.adoptable]
    # CloudFormation imports only resources whose name is static in the template: when it
    # adopts, the account is pinned rather than left to AWS::AccountId.
    run_cdk = partial(run_cdk, pin_account=bool(adopting))
    approve = ["--require-approval", approval]
    first = (run_cdk(["deploy", compute_first, "--exclusively", *approve])
             if compute_first else None)
    # Adopting, the drift revert follows in a deploy of its own: an import and a drift
    # revert are not one change set.
    inv = run_cdk(["deploy", *targets, *approve,
                   *(["--import-existing-resources"] if adopting else []),
                   *(["--revert-drift"] if revert_drift and not adopting else [])])
    then = None
    if adopting:
        stacks = sorted({found.resource.stack for found in adopting})
        then = run_cdk(["deploy", *stacks, "--exclusively", *approve, "--revert-drift"])
    return first, inv, then


def removal_checks(client: Any, env: Environment, stack: str) -> list[Check]:
    """What must hold before a deploy removes `stack` (one the app no longer has): leaving mode
    `rds`, the DATABASE_URL the functions read must not name the database that goes (the rds
    mode wrote it from the RDS-generated secret), and CloudFormation must be able to delete
    the database (production's has deletion protection)."""
    from collections_ops.services import leftovers

    cfn = client("cloudformation")
    name = env.parameter_name("DATABASE_URL")
    found = aws.or_none(partial(client("ssm").get_parameter, Name=name, WithDecryption=True))
    url = found["Parameter"]["Value"] if found else ""
    checks = []
    if url and leftovers.url_points_into(url, cfn, stack):
        checks.append(Check(f"removing {stack}", False,
                            f"{name} names the database of {stack}, which this deploy removes",
                            f"put the existing database's URL first: collections secrets put "
                            f"DATABASE_URL --env {env.name}"))
    for instance in leftovers.protected_instances(cfn, client("rds"), stack):
        checks.append(Check(f"removing {stack}", False,
                            f"RDS instance {instance} has deletion protection on",
                            f"aws rds modify-db-instance --db-instance-identifier {instance} "
                            "--no-deletion-protection --apply-immediately (it is deleted "
                            "with a final snapshot)"))
    return checks or [Check(f"removing {stack}", True, "the app no longer has it: removed "
                            "once the deploy succeeded")]


def stale_stacks(client: Any, env: Environment, wanted: list[str]) -> list[str]:
    """The environment's stacks in the account that are not among the app's `wanted` ones."""
    from collections_ops.services import leftovers

    return leftovers.stale_stacks(client("cloudformation"), env, wanted)


def remove_stale(client: Any, stack: str) -> None:
    """After the deploy succeeded (nothing deployed imports from it any more): delete a stack
    the app no longer has, and wait for CloudFormation to finish."""
    from botocore.exceptions import WaiterError

    from collections_ops.services import leftovers

    try:
        leftovers.remove(client("cloudformation"), stack)
    except WaiterError:  # the stack ended in DELETE_FAILED
        raise errors.CollectionsError(
            f"CloudFormation could not delete {stack}",
            f"aws cloudformation describe-stack-events --stack-name {stack} --max-items 20; "
            "after fixing the cause, `collections destroy` or the next deploy removes it") from None


def drops_an_import(before: Environment | None, after: Environment,
                    previous: DeploymentRecord | None, planned: DeploymentRecord) -> bool:
    """Whether the database stack would stop exporting a value the deployed compute stack
    imports (the RDS Proxy's endpoint, when `rds_proxy` is turned off). CloudFormation refuses
    to delete an export in use, and the database stack deploys first: the compute stack must
    stop importing it in a deploy of its own before."""
    return (before is not None and previous is not None and previous.database == "rds"
            and planned.database == "rds" and before.rds_proxy and not after.rds_proxy)


def deployed(client: Any, env: Environment, plan: DeployPlan, *, state_dir: Path,
             ) -> tuple[DeploymentRecord, dict[str, list[str]], list[str]]:
    """After `cdk deploy` succeeded: write the record (here and in the account), prune
    the published versions beyond `versions_to_keep` (the stack retains them all), and
    remove the first SSM layout's parameters the deployed functions no longer read.
    Returns the record written, the versions pruned per function and what was removed."""
    from collections_ops.services import deployment, drift, layout, versions

    env = deployment.environment_of(env, plan.record)
    stamped = deployment.stamped(plan.record)
    deployment.save(state_dir, stamped)
    deployment.publish(client("ssm"), env, stamped)
    retired = [m.sentence() for m in layout.retire(client("ssm"), env)]
    recorded = drift.stack_versions(client("cloudformation"), env.stack_name("Compute"))
    return stamped, versions.prune_all(client("lambda"), env, keep=env.versions_to_keep,
                                       recorded=recorded), retired


def destroyed(client: Any, env: Environment, *, state_dir: Path) -> None:
    """After `cdk destroy` succeeded: the environment has no record any more."""
    from collections_ops.services import deployment

    deployment.forget(state_dir)
    deployment.unpublish(client("ssm"), env)


def run(inv: CdkInvocation, *, stdout_to_stderr: bool = False) -> int:
    """Run the CDK CLI, its output streamed straight to the terminal (to stderr when stdout
    carries the command's JSON document)."""
    try:
        return subprocess.run(inv.argv, cwd=inv.cwd, env=inv.env, check=False,
                              stdout=sys.stderr if stdout_to_stderr else None).returncode
    except FileNotFoundError:
        raise errors.ConfigError(f"cannot run {inv.argv[0]}", "install the CDK CLI: "
                                 "`make setup` or set COLLECTIONS_CDK") from None


# --------------------------------------------------------------------------- preflight


UNRESERVED_MINIMUM = 100  # Lambda keeps this many executions unreserved in every account


def check_credentials(client: Any) -> Check:
    try:
        identity = client("sts").get_caller_identity()
    except errors.CollectionsError:
        raise  # a configuration error (e.g. the region) is not a credentials one
    except Exception as exc:
        mapped = aws.translate(exc)
        return Check("credentials", False, mapped.message if mapped else str(exc),
                     mapped.hint if mapped else "configure AWS credentials")
    return Check("credentials", True, f"account {identity['Account']} as "
                 f"{identity['Arn'].rpartition(':')[2]}")


def require_credentials(client: Any) -> Check:
    """Stop before anything is built or synthesized when AWS would refuse us anyway."""
    check = check_credentials(client)
    if not check.ok:
        raise errors.CredentialsError(check.detail, check.fix)
    return check


def check_region(client: Any, record: DeploymentRecord) -> Check:
    region = client("ssm").meta.region_name
    if not region:
        return Check("region", False, "none", "pass --region or set AWS_REGION")
    if region != record.region:
        return Check("region", False, f"the CLI talks to {region}, the stacks of "
                     f"{record.env} are in {record.region}",
                     f"drop --region, or pass --region {record.region}")
    return Check("region", True, region)


def unreserved_after(account_settings: dict[str, Any], current: dict[str, int],
                     wanted: dict[str, int]) -> tuple[int, int]:
    """(account limit, unreserved executions once `wanted` replaces `current`).

    `current`: what the environment's functions reserve now (a redeploy replaces it, so it
    does not count against the new reservation)."""
    limit = account_settings["AccountLimit"]
    total = int(limit["ConcurrentExecutions"])
    unreserved = int(limit["UnreservedConcurrentExecutions"])
    others = total - unreserved - sum(current.values())
    return total, total - others - sum(wanted.values())


def check_concurrency(lam: Any, env: Environment) -> Check:
    wanted = dict(env.reserved_concurrency)
    if not wanted:
        return Check("account concurrency", True, "no reserved concurrency in the settings")
    try:
        account_settings = lam.get_account_settings()
    except Exception as exc:
        if aws.translate(exc) is not None:
            raise
        return Check("account concurrency", False,
                     f"cannot read the account's Lambda settings ({aws.error_code(exc)})",
                     "allow lambda:GetAccountSettings to the deploying identity")
    current: dict[str, int] = {}
    for fn in DEPLOYED_FUNCTIONS:
        concurrency = aws.or_none(partial(lam.get_function_concurrency,
                                          FunctionName=fn.function_name(env.name)))
        reserved = (concurrency or {}).get("ReservedConcurrentExecutions")
        if reserved is not None:
            current[fn.key] = int(reserved)
    total, left = unreserved_after(account_settings, current, wanted)
    asked = sum(wanted.values())
    if left < UNRESERVED_MINIMUM:
        return Check("account concurrency", False,
                     f"reserving {asked} of the account's {total} concurrent executions leaves "
                     f"{left} unreserved; Lambda requires at least {UNRESERVED_MINIMUM}",
                     "request a higher 'Concurrent executions' quota (Service Quotas), or lower "
                     f"reserved_concurrency in the {env.name} settings")
    return Check("account concurrency", True,
                 f"reserving {asked} of {total} leaves {left} unreserved")


def required_parameters(env: Environment, record: DeploymentRecord) -> tuple[Secret, ...]:
    """With `--database rds` the functions read the RDS-generated secret: no DATABASE_URL."""
    needed = env.required_secrets()
    if record.database == "rds":
        needed = tuple(s for s in needed if s.name != "DATABASE_URL")
    return needed


def preflight(client: Any, env: Environment, *, bundle_dir: Path | None,
              record: DeploymentRecord | None = None) -> list[Check]:
    """Everything `cdk deploy` would otherwise fail on halfway, checked first."""
    from collections_ops.services import deployment

    record = record or deployment.plan(env, None)
    checks = [check_credentials(client)]
    if not checks[0].ok:
        return checks  # nothing else can be checked
    checks.append(check_region(client, record))
    ssm = client("ssm")
    try:
        version = ssm.get_parameter(Name=BOOTSTRAP_VERSION_PARAMETER)["Parameter"]["Value"]
        checks.append(Check("bootstrap", True, f"CDK bootstrap version {version}"))
    except Exception as exc:
        checks.append(Check("bootstrap", False,
                            "this account/region is not bootstrapped" if aws.is_not_found(exc)
                            else f"cannot read bootstrap version ({aws.error_code(exc)})",
                            f"collections bootstrap {env.name}"))
    for spec in required_parameters(env, record):
        # As the functions read it: the environment's own value, else the shared one.
        name, detail = env.parameter_name(spec.name), "missing"
        for candidate in env.parameter_lookup(spec.name):
            try:
                ssm.get_parameter(Name=candidate)
                name, detail = candidate, "present"
                break
            except Exception as exc:
                if not aws.is_not_found(exc):
                    name, detail = candidate, str(aws.error_code(exc))
                    break
        fix = f"collections secrets put {spec.name} --env {env.name}"
        ok = detail == "present"
        checks.append(Check(f"parameter {name}", ok, detail, None if ok else fix))
    checks.append(check_concurrency(client("lambda"), env))
    if bundle_dir is not None:
        missing = [fn.code_dir for fn in FUNCTIONS if not (bundle_dir / fn.code_dir).is_dir()]
        checks.append(Check("bundles", not missing,
                            f"built in {bundle_dir}" if not missing else
                            f"not built: {', '.join(missing)}",
                            None if not missing else f"collections build {env.name}"))
    return checks
