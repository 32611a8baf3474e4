"""The local cloud's front door: every request is authenticated here, in the project's own
code, before any of moto's code sees it.

moto's request authentication has shortcuts: it returns early, for every service, when the
`X-Amz-Target` header names one of Cognito's public operations (so a request with that header
and any `Authorization` ran unchecked: an unsigned `CreateAccessKey` for the administrator
returned a new key); it never checks a session token's presence for user keys or the request's
date; and it has no query-string (presigned URL) authentication at all (a presigned GET raised
a KeyError: 500). None of that is AWS.

So, in front of moto's WSGI app, `front_door` has every request's signature verified as AWS
verifies it (`signatures.authenticate`: SigV4 in the header or the query, S3's presigned
SigV2 query, the key an active one of moto's IAM or STS, the date within AWS's limits).

A request that fails gets AWS's 403 in its protocol's shape and reaches nothing. One that
passes goes on with its caller recorded for this thread (`authenticated`); moto's single
authorization point (`_authenticate_and_authorize_action`, which every service's dispatch
calls) is replaced by `authorize`, which has no shortcut and checks the recorded caller's
policies with `iam.evaluate` (see `iam`).

Not verified: the per-chunk signatures of `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` bodies (the
seed signature is; boto3 does not send them), Signature Version 2, and session expiry (moto
does not expire sessions; Lambda would refresh them).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from collections_ops.localcloud.aws.signatures import (
    ALGORITHM,
    Caller,
    Refused,
    authenticate,
    query_pairs,
)

log = logging.getLogger("collections.localcloud")
# Services answering in AWS's JSON protocols (X-Amz-Target, or Lambda's REST JSON).
JSON_SERVICES = {"events", "logs", "ssm", "lambda", "secretsmanager", "kms"}

_current = threading.local()


def authenticated() -> Caller | None:
    return getattr(_current, "caller", None)


# ------------------------------------------------------------------------- the WSGI layer


def front_door(app: Callable[..., Any], *, account: str, region: str,
               open_paths: Iterable[str] = ()) -> Callable[..., Any]:
    """Wrap moto's WSGI app so that nothing unauthenticated reaches it. `open_paths` are
    read-only pages served to anyone with a GET (the supervisor's probe)."""
    unauthenticated = frozenset(open_paths)

    def door(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD") \
                and environ.get("PATH_INFO", "") in unauthenticated:
            return app(environ, start_response)
        try:
            caller = authenticate(environ, account=account, region=region)
        except Refused as refused:
            log.info("refused %s %s: %s (%s)", environ.get("REQUEST_METHOD"),
                     environ.get("PATH_INFO", "")[:200], refused.code, refused.message)
            return _refusal(environ, start_response, refused)
        _current.caller = caller
        result = None
        try:
            result = app(environ, start_response)
            return list(result)
        finally:
            _current.caller = None
            close = getattr(result, "close", None)
            if close is not None:
                close()

    return door


# ------------------------------------------------------------------------- authorization


def authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
    """moto's `_authenticate_and_authorize_action`, without its shortcuts: the front door
    authenticated the request; here its caller's policies decide, for every operation."""
    caller = authenticated()
    headers = dict(self.headers)
    if caller is None:  # only the front door's open pages get here unauthenticated
        _deny_unauthenticated(iam_request_cls)
    if "Authorization" not in headers:  # a presigned request: moto reads the caller there
        headers["Authorization"] = (
            f"{ALGORITHM} Credential={caller.access_key_id}/{caller.date}/{caller.region}/"
            f"{caller.service}/aws4_request, SignedHeaders=host, Signature=-")
        if caller.session_token:
            headers["X-Amz-Security-Token"] = caller.session_token
    path = self.raw_path
    from urllib.parse import urlparse

    parsed = urlparse(self.uri)
    if parsed.query:
        path += "?" + parsed.query
    request = iam_request_cls(account_id=self.current_account, method=self.method, path=path,
                              data=self.data, body=self.raw_body, headers=headers,
                              action=self._get_action())
    request.check_action_permitted(resource)


def _deny_unauthenticated(iam_request_cls: type) -> NoReturn:
    from moto.core.exceptions import JsonRESTError
    from moto.iam.access_control import S3IAMRequest
    from moto.s3.exceptions import S3ClientError

    if iam_request_cls is S3IAMRequest:
        raise S3ClientError("AccessDenied", "Access Denied")
    error = JsonRESTError("MissingAuthenticationTokenException",
                          "Request is missing Authentication Token")
    error.code = 403
    raise error


def install() -> None:
    """Route moto's authorization of every service through `authorize`."""
    from moto.core.authorization import ActionAuthenticatorMixin

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authorize  # type: ignore[method-assign]
    ActionAuthenticatorMixin.PUBLIC_OPERATIONS = []  # belt and braces: no operation is public


# ------------------------------------------------------------------------- refusals


def _signing_service(environ: dict[str, Any]) -> str:
    scope = environ.get("HTTP_AUTHORIZATION", "").partition("Credential=")[2] or \
        dict(query_pairs(environ.get("QUERY_STRING", ""))).get("X-Amz-Credential", "")
    parts = scope.split("/")
    return parts[3] if len(parts) > 3 else ""


def _protocol(environ: dict[str, Any]) -> str:
    """How the caller expects its error: `json`, `rest-json`, `query` (XML) or `s3` (XML)."""
    if environ.get("HTTP_X_AMZ_TARGET"):
        return "json"
    service = _signing_service(environ)
    if service == "lambda" or environ.get("PATH_INFO", "").startswith("/2015-03-31/"):
        return "rest-json"
    if service in JSON_SERVICES:
        return "json"
    if "Action=" in environ.get("QUERY_STRING", "") or (service and service != "s3") or \
            str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded"):
        return "query"
    return "s3"


# The same refusal, named as each protocol's services name it.
JSON_CODES = {"InvalidAccessKeyId": "UnrecognizedClientException",
              "InvalidClientTokenId": "UnrecognizedClientException",
              "InvalidToken": "UnrecognizedClientException",
              "SignatureDoesNotMatch": "InvalidSignatureException",
              "RequestTimeTooSkewed": "InvalidSignatureException",
              "XAmzContentSHA256Mismatch": "InvalidSignatureException",
              "AccessDenied": "AccessDeniedException"}
QUERY_CODES = {"InvalidAccessKeyId": "InvalidClientTokenId",
               "InvalidToken": "InvalidClientTokenId"}


def _refusal(environ: dict[str, Any], start_response: Callable[..., Any],
             refused: Refused) -> list[bytes]:
    request_id = uuid.uuid4().hex
    protocol = _protocol(environ)
    headers = [("x-amzn-RequestId", request_id)]
    if protocol in ("json", "rest-json"):
        code = JSON_CODES.get(refused.code, f"{refused.code}Exception")
        body = json.dumps({"__type": code, "message": refused.message}).encode()
        headers += [("Content-Type", "application/x-amz-json-1.1"),
                    ("x-amzn-ErrorType", code)]
    elif protocol == "query":
        code = QUERY_CODES.get(refused.code, refused.code)
        body = (f'<?xml version="1.0" encoding="UTF-8"?><ErrorResponse><Error><Type>Sender'
                f"</Type><Code>{code}</Code><Message>{_xml(refused.message)}"
                f"</Message></Error><RequestId>{request_id}</RequestId>"
                "</ErrorResponse>").encode()
        headers.append(("Content-Type", "text/xml"))
    else:
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{refused.code}</Code>'
                f"<Message>{_xml(refused.message)}</Message><RequestId>{request_id}"
                "</RequestId></Error>").encode()
        headers.append(("Content-Type", "application/xml"))
    headers.append(("Content-Length", str(len(body))))
    start_response("403 Forbidden", headers)
    if environ.get("REQUEST_METHOD") == "HEAD":
        return [b""]
    return [body]


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
