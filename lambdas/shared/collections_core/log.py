"""Structured, secret-masking logging.

One JSON object per line so CloudWatch Logs Insights and `collections logs` can filter by
`item_id` or `correlation_id`. Every secret read through `collections_core.secrets` is registered
here and replaced by `****` in every record before it is written, whatever logged it.

`mask` is the one masking function of the project: the handlers' lines, their dead-letter
records, and the local cloud's own error lines and dead-letter records all pass it. A secret is
known in every form it can take in a message: as stored, JSON-escaped (a line is masked after it
is serialized), and -- for a connection URL -- its password raw, percent-decoded and as each of
the parsers that may quote it split it (Python splits the user info at the last `@`, libpq at the
first, so a password with an `@` is quoted differently by each).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any

_SECRET_VALUES: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_context = threading.local()
MASK = "****"


MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words; no real secret is this short
_ordered: tuple[str, ...] = ()  # longest first, so a URL is masked whole before its password


def _forms(value: str) -> set[str]:
    from urllib.parse import quote, unquote

    forms = {value, json.dumps(value)[1:-1]}
    for password in _url_passwords(value):
        for p in (password, unquote(password), quote(unquote(password), safe="")):
            forms |= {p, json.dumps(p)[1:-1]}
    return {f for f in forms if len(f) >= MIN_SECRET_CHARS}


def _url_passwords(value: str) -> set[str]:
    """Every string a URL parser might take for the password of `value`, if it is a URL."""
    scheme, sep, rest = value.partition("://")
    if not sep or not scheme or "@" not in rest:
        return set()
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    if "@" not in authority:  # an '@' after the first '/' belongs to the path or query
        authority = rest.rsplit("@", 1)[0] + "@"
    out = set()
    for at in [i for i, ch in enumerate(authority) if ch == "@"]:
        user_info = authority[:at]
        _user, colon, password = user_info.partition(":")
        if colon and password:
            out.add(password)
    return out


def register_secret(value: str | None) -> None:
    """Mask `value` (and every form of it, see the module docstring) in everything written."""
    if not value or len(value) < MIN_SECRET_CHARS:
        return
    global _ordered
    forms = _forms(value)
    with _SECRETS_LOCK:
        if forms <= _SECRET_VALUES:
            return
        _SECRET_VALUES.update(forms)
        # Replaced, never mutated: `mask` on another thread reads one consistent tuple.
        _ordered = tuple(sorted(_SECRET_VALUES, key=len, reverse=True))


# Environment variables that may hold a secret value (a developer's shell, a test, the local
# cloud); their values are registered by `register_environ`.
SECRET_ENVIRONMENT = ("DATABASE_URL", "ANTHROPIC_API_KEY", "OPENAI_API_KEY",
                      "LANGSMITH_API_KEY", "VOYAGE_API_KEY")


def register_environ(environ: Any = None) -> None:
    """Register the secret values found in `environ` (default: this process's environment)."""
    source = os.environ if environ is None else environ
    for name in SECRET_ENVIRONMENT:
        register_secret(source.get(name))


def mask(text: str) -> str:
    """`text` with every registered secret, in every known form, replaced by `****`."""
    if not isinstance(text, str):
        text = str(text)
    for value in _ordered:
        if value in text:
            text = text.replace(value, MASK)
    return text


def bind(**fields: Any) -> None:
    """Attach fields (request_id, item_id, correlation_id...) to every record of this invocation."""
    current = dict(getattr(_context, "fields", {}))
    current.update({k: v for k, v in fields.items() if v is not None})
    _context.fields = current


def clear() -> None:
    _context.fields = {}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "message": record.getMessage(),
        }
        payload.update(getattr(_context, "fields", {}))
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            payload.update(extra)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            payload["error_type"] = type(exc).__name__
        return mask(json.dumps(payload, default=str))


_configured = False


def get_logger(name: str) -> logging.Logger:
    global _configured
    if not _configured:
        root = logging.getLogger()
        # Lambda's runtime installs its own handler; give every handler our masking formatter.
        if not root.handlers:
            root.addHandler(logging.StreamHandler(sys.stdout))
        for h in root.handlers:
            h.setFormatter(JsonFormatter())
        root.setLevel(os.environ.get("LOG_LEVEL", "INFO"))
        for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore", "anthropic", "PIL"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        _configured = True
    return logging.getLogger(name)


def event(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log `message` with structured fields (`stage`, `outcome`, durations...)."""
    logger.log(level, message, extra={"fields": fields})
