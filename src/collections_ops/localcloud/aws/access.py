"""How code outside the local cloud reaches a running one, as its administrator: boto3
clients (benchmarks, tests) and the variables for the `aws` CLI (`collections env local`).

Above `state` and `iam`: it reads the one and the other's credentials."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from collections_ops.localcloud.aws import iam
from collections_ops.localcloud.state import LocalState


def client_factory(state: LocalState) -> Callable[[str], Any]:
    """`client(service)` for the local cloud's endpoint, each client made once (for code that
    runs outside the CLI's composition root: benchmarks, tests), as the local cloud's
    administrator."""
    session = iam.admin_session(state.state_dir, state.region)
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = session.client(service, endpoint_url=state.endpoint_url)
        return clients[service]

    return client


# What the operator's shell must not keep: a session token or a profile would be used with, or
# instead of, the administrator's key (a profile set in the environment makes the SDKs skip
# the key variables altogether).
OPERATOR_UNSET = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
                  "AWS_DEFAULT_PROFILE")


def operator_environment(state: LocalState) -> dict[str, str]:
    """The variables that point the `aws` CLI and the SDKs at this local cloud, signing as its
    administrator (what `collections env local` prints)."""
    creds = iam.admin_credentials(state.state_dir)
    return {"AWS_ENDPOINT_URL": state.endpoint_url,
            "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
            # Both: the aws CLI v2 and newer SDKs read AWS_REGION before AWS_DEFAULT_REGION.
            "AWS_DEFAULT_REGION": state.region, "AWS_REGION": state.region}
