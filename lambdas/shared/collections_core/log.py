"""Structured, secret-masking logging.

One JSON object per line so CloudWatch Logs Insights and `collections logs` can filter by
`item_id` or `correlation_id`. Every secret read through `collections_core.secrets` is registered
here and replaced by `****` in every record before it is written, whatever logged it.
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


def register_secret(value: str) -> None:
    if value and len(value) >= 4:
        with _SECRETS_LOCK:
            _SECRET_VALUES.add(value)


def mask(text: str) -> str:
    for value in _SECRET_VALUES:
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
