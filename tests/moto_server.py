"""The session's moto server, as the tests drive it."""

from __future__ import annotations

import urllib.request


def reset_moto(endpoint: str) -> None:
    """Forget every resource the moto server at `endpoint` holds (what earlier tests made)."""
    urllib.request.urlopen(urllib.request.Request(
        f"{endpoint}/moto-api/reset", method="POST"), timeout=10).read()
