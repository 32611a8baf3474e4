"""One result type for everything that checks something — deploy preflight, doctor, verify,
secrets verify — so one renderer (`cli.render.checks`) and one JSON shape show them all."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    severity: Literal["error", "warning"] = "error"  # a warning is worth a look, not broken

    @property
    def failed(self) -> bool:
        """Failed in a way that should fail the command (warnings do not)."""
        return not self.ok and self.severity == "error"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.failed]
