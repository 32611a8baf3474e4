"""What the embedder embeds of an analysis and what each model makes of it: the rules that the
embedder (lambdas/embedder) and the CLI must apply alike.

`document_text` is the text that stands for an analysed image in the vector space, and
`content_hash` its fingerprint, stored with every vector: the embedder skips an analysis whose
hash it has already embedded, `collections reconcile` calls a vector stale when its hash is not
the analysis's, and `reembed` embeds the same text. `MODEL_DIMENSIONS` are the models'
output lengths: a vector of another length is refused by the embedder and reported by reconcile.

The provider calls (Voyage's SDK, the offline models) stay in the embedder's own
`embedding` module; this one imports nothing beyond the standard library.
"""

from __future__ import annotations

import hashlib
from typing import Any

from collections_core.errors import TerminalError

LOCAL_MODEL = "local-hash-v1"
LOCAL_DIMENSIONS = 1024
E5_MODEL = "multilingual-e5-small-q4"
E5_DIMENSIONS = 384
LOCAL_MODELS = (E5_MODEL, LOCAL_MODEL)
# Output dimensions of the models this pipeline uses by default. A vector of another length
# from one of them is refused: stored, it would be invisible to every search of its model.
MODEL_DIMENSIONS = {
    LOCAL_MODEL: LOCAL_DIMENSIONS,
    E5_MODEL: E5_DIMENSIONS,
    "voyage-3.5": 1024,
    "voyage-3.5-lite": 1024,
    "voyage-3-large": 1024,
    "voyage-3": 1024,
}
MAX_TEXT_CHARS = 32_000  # far below voyage-3.5's 32k-token context


def document_text(analysis: dict[str, Any]) -> str:
    """The text that stands for an analysed image in the vector space. An analysis whose
    text is over MAX_TEXT_CHARS cannot be embedded at all (TerminalError)."""
    parts = [
        f"Category: {analysis['category']}",
        f"Summary: {analysis['summary']}",
        f"Description: {analysis.get('description') or ''}",
        f"Tags: {', '.join(analysis.get('tags') or [])}",
        f"Colors: {', '.join(analysis.get('colors') or [])}",
    ]
    if analysis.get("text_content"):
        parts.append(f"Text: {analysis['text_content']}")
    text = "\n".join(parts)
    if len(text) > MAX_TEXT_CHARS:
        raise TerminalError(f"the text to embed is {len(text)} characters; "
                            f"the limit is {MAX_TEXT_CHARS}")
    return text


def content_hash(text: str) -> str:
    """The `content_hash` stored with a vector of `text` (a `document_text`)."""
    return hashlib.sha256(text.encode()).hexdigest()
