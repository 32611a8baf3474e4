"""Settings the functions read from their environment (set by the stack or the local cloud).

There are no fallback values: the stack and the local cloud set every one of these from the
pipeline definition, so a missing one means the function was deployed wrongly, and a default
here would hide that (and could disagree with the definition). All missing names are reported
at once, on the first invocation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from collections_core.errors import ConfigurationError

_HINT = "the function's environment comes from the pipeline definition; redeploy"


def env(name: str) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        raise ConfigurationError(f"environment variable {name} is not set", hint=_HINT)
    return value


REQUIRED = (
    "COLLECTIONS_ENV", "IMAGES_BUCKET", "THUMBNAILS_BUCKET", "THUMBNAIL_SIZE", "EVENT_BUS_NAME",
    "SECRET_PARAMETERS", "ANALYZER_PROVIDER", "ANALYZER_MODEL", "EMBEDDING_PROVIDER",
    "EMBEDDING_MODEL", "IMAGE_PROCESSED_SOURCE", "IMAGE_PROCESSED_DETAIL_TYPE",
    "ANALYSIS_COMPLETE_SOURCE", "ANALYSIS_COMPLETE_DETAIL_TYPE",
)


@dataclass(frozen=True)
class Settings:
    env_name: str
    images_bucket: str
    thumbnails_bucket: str
    thumbnail_size: int
    event_bus: str
    analyzer_provider: str
    analyzer_model: str
    embedding_provider: str
    embedding_model: str
    image_processed_source: str
    image_processed_detail_type: str
    analysis_complete_source: str
    analysis_complete_detail_type: str

    @classmethod
    def from_environ(cls) -> Settings:
        missing = [name for name in REQUIRED if not os.environ.get(name)]
        if missing:
            raise ConfigurationError(
                f"the function's environment lacks {', '.join(missing)}", hint=_HINT)
        return cls(
            env_name=env("COLLECTIONS_ENV"),
            images_bucket=env("IMAGES_BUCKET"),
            thumbnails_bucket=env("THUMBNAILS_BUCKET"),
            thumbnail_size=int(env("THUMBNAIL_SIZE")),
            event_bus=env("EVENT_BUS_NAME"),
            analyzer_provider=env("ANALYZER_PROVIDER"),
            analyzer_model=env("ANALYZER_MODEL"),
            embedding_provider=env("EMBEDDING_PROVIDER"),
            embedding_model=env("EMBEDDING_MODEL"),
            image_processed_source=env("IMAGE_PROCESSED_SOURCE"),
            image_processed_detail_type=env("IMAGE_PROCESSED_DETAIL_TYPE"),
            analysis_complete_source=env("ANALYSIS_COMPLETE_SOURCE"),
            analysis_complete_detail_type=env("ANALYSIS_COMPLETE_DETAIL_TYPE"),
        )

    @staticmethod
    def dlq_url_for(function_key: str) -> str | None:
        return os.environ.get(f"DLQ_URL_{function_key.upper()}") or None
