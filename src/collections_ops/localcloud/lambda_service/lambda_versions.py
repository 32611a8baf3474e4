"""Lambda version numbers as AWS gives them, in the local cloud's moto.

AWS numbers a function's published versions 1, 2, 3, ... and never gives a number twice: after
version 1 is deleted (a prune), the next one published is 4. moto numbers a new version
`len(versions) + 1`, so after a deletion it hands out a number that is still in use -- two
versions "3", and `rollback --to 3`, an alias or a retained version naming either. The local
cloud prunes as AWS deployments do (`configure`, `tune --apply`), so it numbers as AWS does.

Runs in the local cloud's emulator process, before the server starts.
"""

from __future__ import annotations

import copy
from typing import Any

# In moto's per-function entry ({"latest": ..., "versions": [...]}, read only by key): the
# highest number given, which a deletion does not lower. A deleted and re-created function
# gets a new entry and starts again at 1, as on AWS.
_HIGHEST = "collections_highest_version"


def install() -> None:
    """Replace moto's `LambdaStorage.publish_version` with one that never reuses a number.
    Otherwise the same as moto's: nothing changed since the last version publishes nothing
    and returns that version."""
    from moto.awslambda.models import LambdaStorage

    if getattr(LambdaStorage.publish_version, "collections_numbering", False):
        return

    def publish_version(self: Any, name_or_arn: str, description: str = "") -> Any:
        function = self.get_function_by_name_or_arn_forbid_qualifier(name_or_arn)
        name = function.function_name
        if name not in self._functions or not self._functions[name]["latest"]:
            return None
        entry = self._functions[name]
        versions = entry["versions"]
        if versions:
            if not function.code_or_config_updated:
                return versions[-1]
            function.code_or_config_updated = False
        number = max([int(entry.get(_HIGHEST, 0)), *(int(v.version) for v in versions)]) + 1
        entry[_HIGHEST] = number
        published = copy.copy(entry["latest"])
        published.set_version(number)
        if description:
            published.description = description
        versions.append(published)
        self._arns[published.function_arn] = published
        return published

    publish_version.collections_numbering = True  # type: ignore[attr-defined]
    LambdaStorage.publish_version = publish_version  # type: ignore[method-assign]
