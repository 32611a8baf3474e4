"""Which embedding models a database holds and which one it searches with (migration 0006).

An environment's `embedding_models` table records every model whose vectors `embeddings`
holds: at most one `active` (what `collections search` embeds the query with, and what the
embedder embeds every new analysis with), any number `filling` (`collections reembed` is filling
their vectors; the embedder embeds with them too, so a fill never falls behind new uploads) and
`retired` (once active; their rows stay until `reembed --drop`). A database with no model
recorded (new, nothing embedded yet) is searched and embedded with the environment's configured
model, and the embedder's first stored vector records that model as active.

The statements are shared by the embedder, the operations function and the CLI (search,
`reembed`), so every route reads the registry alike.
"""

from __future__ import annotations

from typing import Any, NamedTuple

ACTIVE, FILLING, RETIRED = "active", "filling", "retired"
MAX_MODEL_CHARS = 200

MODELS_SQL = ("SELECT model, dimensions, state, index_name FROM embedding_models"
              " ORDER BY state, model")
IN_USE_SQL = ("SELECT model, dimensions, state, index_name FROM embedding_models"
              " WHERE state IN ('active', 'filling') ORDER BY state, model")
# The first stored vector of a database with no active model records its model as active; a
# model already recorded (any state), or another model active, leaves the registry as it is
# (the unique index on the active row makes a concurrent second insert a no-op).
RECORD_ACTIVE_SQL = ("INSERT INTO embedding_models (model, dimensions, state, activated_at)"
                     " SELECT %s, %s, 'active', now()"
                     " WHERE NOT EXISTS (SELECT 1 FROM embedding_models WHERE state = 'active')"
                     " ON CONFLICT DO NOTHING")


class Model(NamedTuple):
    model: str
    dimensions: int
    state: str
    index_name: str | None = None


def registered(cur: Any, *, in_use_only: bool = False) -> list[Model]:
    """The recorded models (with `in_use_only`, the active and filling ones)."""
    cur.execute(IN_USE_SQL if in_use_only else MODELS_SQL)
    return [Model(str(r[0]), int(r[1]), str(r[2]), r[3]) for r in cur.fetchall()]


def active(models: list[Model]) -> Model | None:
    return next((m for m in models if m.state == ACTIVE), None)


def embedding_targets(models: list[Model], configured: str) -> list[str]:
    """The models a new analysis is embedded with: the active one (the configured one while none
    is recorded), then every filling one."""
    current = active(models)
    first = current.model if current else configured
    return [first, *(m.model for m in models if m.state == FILLING and m.model != first)]


def provider_of(model: str, *, configured_model: str, configured_provider: str,
                local_models: tuple[str, ...]) -> str:
    """The provider that makes `model`'s vectors: the configured one for the configured model,
    `local` for the offline models (`local_models`), else `voyage` (the hosted provider)."""
    if model == configured_model:
        return configured_provider
    return "local" if model in local_models else "voyage"


def check_model_name(value: Any) -> str:
    """A model name as it may come from an event or a request."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_MODEL_CHARS \
            or not value.isprintable():
        raise ValueError(f"a model name is 1 to {MAX_MODEL_CHARS} printable characters")
    return value
