"""The SSM parameters of an environment, as data: each one's name, scope, the secret it holds,
which functions read it and who writes it.

A function reads a secret from the parameters `Environment.parameter_lookup` names, in order
(the environment's override, then the shared key); those are its parameters here, and the
functions learn them from `SECRET_PARAMETERS` (`common_env`, set by the compute stack and the
local cloud alike), their roles may read exactly them (`pipeline.permissions`). The local cloud
writes the ones marked `local_cloud` itself (`localcloud/provision.py`); on AWS the operator
(`collections secrets put`), the deploy-time migration or `deploy` write them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from collections_ops.pipeline.constants import Scope
from collections_ops.pipeline.environments import SECRETS, Environment
from collections_ops.pipeline.functions import DEPLOYED_FUNCTIONS, FUNCTIONS

Writer = Literal["operator", "migration", "deploy"]


@dataclass(frozen=True)
class Parameter:
    name: str  # the full name: /collections/dev/DATABASE_URL
    scope: Scope
    holds: str  # the secret's name, or "deployment record"
    readers: tuple[str, ...]  # function keys
    writer: Writer  # on AWS
    local_cloud: bool = False  # the local cloud writes it at every start
    secure: bool = True  # a SecureString


def _writer(secret: str) -> Writer:
    if secret in {fn.database_url_name for fn in FUNCTIONS}:
        return "migration"  # the operations function, from the owner's connection
    return "operator"


def parameters(env: Environment) -> tuple[Parameter, ...]:
    """Every parameter a function of `env` reads, scope by scope as each secret is looked up,
    then the deployment record."""
    found = []
    for secret in SECRETS:
        readers = tuple(fn.key for fn in DEPLOYED_FUNCTIONS if secret.name in fn.secrets)
        local = secret.name == "DATABASE_URL" or _writer(secret.name) == "migration"
        for scope in secret.lookup_scopes:
            found.append(Parameter(name=env.parameter_name(secret.name, scope), scope=scope,
                                   holds=secret.name, readers=readers,
                                   writer=_writer(secret.name), local_cloud=local))
    found.append(Parameter(name=env.record_parameter(), scope="env", holds="deployment record",
                           readers=(), writer="deploy", secure=False))
    return tuple(found)


def lookup(env: Environment) -> dict[str, list[str]]:
    """Secret name -> the parameters to read it from, in order: the functions'
    `SECRET_PARAMETERS`."""
    table: dict[str, list[str]] = {}
    for parameter in parameters(env):
        if parameter.holds in {s.name for s in SECRETS}:
            table.setdefault(parameter.holds, []).append(parameter.name)
    return table


def provisioned_locally(env: Environment) -> tuple[Parameter, ...]:
    """What the local cloud writes: the owner's DATABASE_URL and each function's own URL."""
    return tuple(p for p in parameters(env) if p.local_cloud)
