"""Who signed a request, verified as AWS verifies it: Signature Version 4 in the header or the
query (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html), and S3's
presigned Signature Version 2 query (what boto3's `generate_presigned_url` makes by default),
from the request exactly as it arrived (raw path, raw query, the signed headers, the body's
hash). The front door (`frontdoor`) calls `authenticate` before moto sees a request: why moto's
own check is not enough, and what is not verified, is said there.

- the key must be an active access key of an IAM user, or an assumed-role session whose
  session token the request carries (moto's IAM and STS backends are the source of truth, so
  a key the administrator deletes stops working);
- the signature must match, the credential scope's date must be the request's, a signed
  request must be within 15 minutes of now, a presigned one not past its expiry;
- an S3 payload hash that claims to be the body's must be the body's.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import io
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 15 * 60  # AWS refuses a signed request more than 15 minutes from its clock
MAX_PRESIGNED_S = 7 * 24 * 3600
UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Caller:
    """Who signed the request that this thread serves."""

    access_key_id: str
    region: str
    service: str
    date: str
    session_token: str | None


class Refused(Exception):
    """AWS's answer to a request that does not authenticate."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def authenticate(environ: dict[str, Any], *, account: str, region: str) -> Caller:
    """The caller of a signed (header or query-string) request, or `Refused`."""
    query = query_pairs(environ.get("QUERY_STRING", ""))
    params = dict(query)
    if not environ.get("HTTP_AUTHORIZATION") and "AWSAccessKeyId" in params \
            and "Signature" in params:
        return _authenticate_v2_query(environ, query, account=account, region=region)
    fields, amz_date, token, presigned = _sigv4_fields(environ, params)
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise Refused("IncompleteSignature",
                      "Credential must be KEY/DATE/REGION/SERVICE/aws4_request")
    key_id, date, scope_region, service, _ = scope
    _check_time(params, amz_date, date, presigned=presigned)
    secret, session_token = _secret(key_id, account=account)
    _check_token(session_token, token)
    signed_headers = fields["SignedHeaders"].lower().split(";")
    if "host" not in signed_headers:
        raise Refused("SignatureDoesNotMatch", "the signature must cover the Host header")
    canonical_query = [(k, v) for k, v in query if not (presigned and k == "X-Amz-Signature")]
    payload = _payload_hash(environ, service=service, presigned=presigned)
    canonical = _canonical_request(environ, service, canonical_query, signed_headers, payload)
    string_to_sign = "\n".join([ALGORITHM, amz_date, "/".join(scope[1:]),
                                hashlib.sha256(canonical.encode()).hexdigest()])
    expected = _signature(secret, date, scope_region, service, string_to_sign)
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise Refused("SignatureDoesNotMatch", "The request signature we calculated does not "
                      "match the signature you provided. Check your key and signing method.")
    return Caller(access_key_id=key_id, region=scope_region, service=service, date=date,
                  session_token=session_token)


def _sigv4_fields(environ: dict[str, Any], params: dict[str, str]
                  ) -> tuple[dict[str, str], str, str | None, bool]:
    """(Credential/SignedHeaders/Signature, X-Amz-Date, session token, presigned?)."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    presigned = "X-Amz-Algorithm" in params and not authorization
    if presigned:
        if params["X-Amz-Algorithm"] != ALGORITHM:
            raise Refused("AuthorizationQueryParametersError",
                          f"X-Amz-Algorithm only supports {ALGORITHM}")
        fields = {"Credential": params.get("X-Amz-Credential", ""),
                  "SignedHeaders": params.get("X-Amz-SignedHeaders", ""),
                  "Signature": params.get("X-Amz-Signature", "")}
        amz_date, token = params.get("X-Amz-Date", ""), params.get("X-Amz-Security-Token")
    elif authorization:
        algorithm, _, rest = authorization.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise Refused("IncompleteSignature", "Authorization header requires a "
                          f"{ALGORITHM} signature (Credential, SignedHeaders, Signature)")
        fields = {}
        for part in rest.split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value
        amz_date = _header(environ, "x-amz-date") or ""
        token = _header(environ, "x-amz-security-token")
    else:
        raise Refused("MissingAuthenticationToken",
                      "Request is missing Authentication Token (every request to the local "
                      "cloud must be signed; `collections env local` prints its keys)")
    for name in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(name):
            raise Refused("IncompleteSignature",
                          f"Authorization is missing {name} (a SigV4 signature needs "
                          "Credential, SignedHeaders and Signature)")
    return fields, amz_date, token, presigned


def _check_time(params: dict[str, str], amz_date: str, date: str, *, presigned: bool) -> None:
    signed_at = _parse_date(amz_date)
    if not amz_date.startswith(date):
        raise Refused("SignatureDoesNotMatch",
                      "the credential scope's date is not the request's X-Amz-Date")
    now = time.time()
    if not presigned:
        if abs(now - signed_at) > MAX_SKEW_S:
            raise Refused("RequestTimeTooSkewed", "The difference between the request time "
                          "and the current time is too large")
        return
    try:
        expires = int(params.get("X-Amz-Expires", ""))
    except ValueError:
        raise Refused("AuthorizationQueryParametersError",
                      "X-Amz-Expires must be a number of seconds") from None
    if not 0 < expires <= MAX_PRESIGNED_S:
        raise Refused("AuthorizationQueryParametersError",
                      "X-Amz-Expires must be between 1 and 604800 seconds")
    if now > signed_at + expires:
        raise Refused("AccessDenied", "Request has expired")
    if signed_at > now + MAX_SKEW_S:
        raise Refused("AccessDenied", "Request is not valid yet")


def _check_token(session_token: str | None, token: str | None) -> None:
    """A session's key comes with its session token; a user's key with none."""
    if session_token is not None and token != session_token:
        raise Refused("InvalidToken" if token else "InvalidClientTokenId",
                      "The security token included in the request is invalid")
    if session_token is None and token:
        raise Refused("InvalidToken", "The provided token is malformed or otherwise invalid")


def _authenticate_v2_query(environ: dict[str, Any], query: list[tuple[str, str]], *,
                           account: str, region: str) -> Caller:
    """S3's query-string authentication of Signature Version 2: what boto3's
    `generate_presigned_url` makes unless told `s3v4`
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/RESTAuthentication.html)."""
    from botocore.auth import HmacV1Auth

    params = dict(query)
    try:
        expires = int(params.get("Expires", ""))
    except ValueError:
        raise Refused("AccessDenied", "Query-string authentication requires the "
                      "Signature, Expires and AWSAccessKeyId parameters") from None
    if time.time() > expires:
        raise Refused("AccessDenied", "Request has expired")
    key_id = params["AWSAccessKeyId"]
    secret, session_token = _secret(key_id, account=account)
    amz = {name.lower(): value for name, value in query if name.lower().startswith("x-amz-")}
    for key, value in environ.items():
        if key.startswith("HTTP_X_AMZ_"):
            amz.setdefault(key[5:].lower().replace("_", "-"), str(value))
    _check_token(session_token, amz.get("x-amz-security-token"))
    interesting = [(name, value) for name, value in query if name in HmacV1Auth.QSAOfInterest]
    resource = _raw_path(environ)
    if interesting:
        resource += "?" + "&".join(f"{n}={v}" if v else n for n, v in sorted(interesting))
    string_to_sign = "\n".join(
        [environ.get("REQUEST_METHOD", "GET"),
         params.get("Content-MD5") or _header(environ, "content-md5") or "",
         params.get("Content-Type") or _header(environ, "content-type") or "",
         str(expires)] + [f"{k}:{v}" for k, v in sorted(amz.items())] + [resource])
    digest = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), params["Signature"]):
        raise Refused("SignatureDoesNotMatch", "The request signature we calculated does not "
                      "match the signature you provided. Check your key and signing method.")
    return Caller(access_key_id=key_id, region=region, service="s3",
                  date=time.strftime("%Y%m%d", time.gmtime()), session_token=session_token)


# ------------------------------------------------------------------------- SigV4


def query_pairs(raw: str) -> list[tuple[str, str]]:
    """The query's (name, value) pairs, decoded once (`+` is a plus, as SigV4 reads it)."""
    pairs = []
    for part in raw.split("&") if raw else []:
        name, _, value = part.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def _header(environ: dict[str, Any], name: str) -> str | None:
    key = name.upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = "HTTP_" + key
    value = environ.get(key)
    return None if value is None else str(value)


def _parse_date(amz_date: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        raise Refused("IncompleteSignature",
                      "X-Amz-Date must be an ISO 8601 basic date (YYYYMMDDTHHMMSSZ)") from None


def _raw_path(environ: dict[str, Any]) -> str:
    """The path as the client sent it (still percent-encoded), which is what it signed."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        path = str(raw).split("?", 1)[0]
        if "://" in path:  # an absolute-form request target
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        # werkzeug hands the raw URI over latin-1-decoded (PEP 3333)
        return path.encode("latin-1").decode("utf-8", "surrogateescape") or "/"
    return quote(environ.get("PATH_INFO", "/"), safe="/~") or "/"


def _canonical_request(environ: dict[str, Any], service: str, query: list[tuple[str, str]],
                       signed_headers: list[str], payload: str) -> str:
    path = _raw_path(environ)
    if service != "s3":  # every service but S3 signs the normalized, once-more-encoded path
        from botocore.utils import normalize_url_path

        path = quote(normalize_url_path(path), safe="/~")
    canonical_query = "&".join(
        f"{k}={v}" for k, v in sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~"))
                                      for k, v in query))
    headers = []
    for name in signed_headers:
        value = _header(environ, name)
        if value is None:
            raise Refused("SignatureDoesNotMatch", f"signed header {name} is not in the request")
        headers.append(f"{name}:{' '.join(value.split())}\n")
    return "\n".join([environ.get("REQUEST_METHOD", "GET"), path, canonical_query,
                      "".join(headers), ";".join(signed_headers), payload])


def _payload_hash(environ: dict[str, Any], *, service: str, presigned: bool) -> str:
    """The payload hash the signature covers. S3 names it in `x-amz-content-sha256` (its
    claim is checked against the body); every other service signs the body's hash."""
    claimed = _header(environ, "x-amz-content-sha256")
    if service == "s3":
        if claimed is None:
            if presigned:
                return UNSIGNED
            raise Refused("InvalidRequest", "Missing required header for this request: "
                          "x-amz-content-sha256")
        if _HEX64.fullmatch(claimed) and claimed != hashlib.sha256(_body(environ)).hexdigest():
            raise Refused("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' "
                          "header does not match what was computed.")
        return claimed
    return claimed or hashlib.sha256(_body(environ)).hexdigest()


def _body(environ: dict[str, Any]) -> bytes:
    """Read the request's body once, and put it back for the application."""
    kept = environ.get("collections.body")
    if kept is not None:
        return bytes(kept)
    stream = environ.get("wsgi.input")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if stream is None:
        data = b""
    elif length > 0:
        data = stream.read(length)
    elif environ.get("wsgi.input_terminated"):
        data = stream.read()
    else:
        data = b""
    environ["collections.body"] = data
    environ["wsgi.input"] = io.BytesIO(data)
    return bytes(data)


def _signature(secret: str, date: str, region: str, service: str, string_to_sign: str) -> str:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _secret(key_id: str, *, account: str) -> tuple[str, str | None]:
    """(secret, session token or None) of an active key moto's IAM or STS issued."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    for user in iam_backends[account]["aws"].users.values():
        for key in user.access_keys:
            if key.access_key_id == key_id:
                if getattr(key, "status", "Active") != "Active":
                    raise Refused("InvalidClientTokenId", "The access key is inactive")
                return str(key.secret_access_key), None
    for session in sts_backends[account]["aws"].assumed_roles:
        if session.access_key_id == key_id:
            return str(session.secret_access_key), str(session.session_token)
    raise Refused("InvalidAccessKeyId" if key_id else "IncompleteSignature",
                  "The AWS Access Key Id you provided does not exist in our records.")
