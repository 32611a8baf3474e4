"""SSM SecureString parameters: write, list masked. Values are never logged or returned whole."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from collections_ops import errors
from collections_ops.pipeline import SECRETS, Environment, secret


@dataclass(frozen=True)
class SecretInfo:
    name: str
    parameter: str
    present: bool
    required: bool
    fingerprint: str | None
    version: int | None
    last_modified: str | None


def fingerprint(value: str) -> str:
    """A short, non-reversible tag to tell two values apart without showing either."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:8]


def mask(value: str) -> str:
    return "****" if len(value) < 12 else f"{value[:3]}…{'*' * 4}"


def put(ssm: Any, env: Environment, name: str, value: str, *,
        kms_key_id: str | None = None) -> SecretInfo:
    try:
        spec = secret(name)
    except KeyError:
        known = ", ".join(s.name for s in SECRETS)
        raise errors.ConfigError(f"unknown secret {name!r}", f"known: {known}") from None
    value = value.strip("\r\n")
    if not value:
        raise errors.CliError("the secret value is empty", "nothing was written")
    parameter = spec.parameter_name(env.parameter_prefix)
    kwargs: dict[str, Any] = {"Name": parameter, "Value": value, "Type": "SecureString",
                              "Overwrite": True, "Description": spec.description}
    if kms_key_id:
        kwargs["KeyId"] = kms_key_id
    response = ssm.put_parameter(**kwargs)
    return SecretInfo(name, parameter, True, spec.required, fingerprint(value),
                      int(response.get("Version", 0)), None)


def list_secrets(ssm: Any, env: Environment) -> list[SecretInfo]:
    """Every known secret, present or not -- found by path, decrypted only to fingerprint it."""
    prefix = env.parameter_prefix
    found: dict[str, dict[str, Any]] = {}
    paginator = ssm.get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=prefix, Recursive=False, WithDecryption=True):
        for p in page["Parameters"]:
            found[p["Name"]] = p
    required = {s.name for s in env.required_secrets()}
    out = []
    for spec in SECRETS:
        param = found.get(spec.parameter_name(prefix))
        modified = param.get("LastModifiedDate") if param else None
        out.append(SecretInfo(
            spec.name, spec.parameter_name(prefix), param is not None, spec.name in required,
            fingerprint(param["Value"]) if param else None,
            int(param["Version"]) if param else None,
            modified.isoformat() if modified is not None else None))
    return out
