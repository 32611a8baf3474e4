"""Settings the functions read from their environment (set by the stack or the local cloud)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from collections_core.errors import ConfigurationError


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise ConfigurationError(
            f"environment variable {name} is not set",
            hint="the function's environment comes from the pipeline definition; redeploy",
        )
    return value


@dataclass(frozen=True)
class Settings:
    env_name: str
    images_bucket: str
    thumbnails_bucket: str
    thumbnail_size: int
    event_bus: str
    parameter_prefix: str
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
        return cls(
            env_name=env("COLLECTIONS_ENV"),
            images_bucket=env("IMAGES_BUCKET"),
            thumbnails_bucket=env("THUMBNAILS_BUCKET"),
            thumbnail_size=int(env("THUMBNAIL_SIZE", "512")),
            event_bus=env("EVENT_BUS_NAME", "default"),
            parameter_prefix=env("PARAMETER_PREFIX", "/collections"),
            analyzer_provider=env("ANALYZER_PROVIDER", "anthropic"),
            analyzer_model=env("ANALYZER_MODEL", "claude-sonnet-4-6"),
            embedding_provider=env("EMBEDDING_PROVIDER", "voyage"),
            embedding_model=env("EMBEDDING_MODEL", "voyage-3.5"),
            image_processed_source=env("IMAGE_PROCESSED_SOURCE", "collections.imageprocessor"),
            image_processed_detail_type=env("IMAGE_PROCESSED_DETAIL_TYPE", "ImageProcessed"),
            analysis_complete_source=env("ANALYSIS_COMPLETE_SOURCE", "collections.analyzer"),
            analysis_complete_detail_type=env("ANALYSIS_COMPLETE_DETAIL_TYPE", "AnalysisComplete"),
        )

    @staticmethod
    def dlq_url_for(function_key: str) -> str | None:
        return os.environ.get(f"DLQ_URL_{function_key.upper()}") or None
