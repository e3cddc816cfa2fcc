"""The models shipped inside comicgen (``bundled:NAME``): weights and model cards, and
what a prompt may say to them."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent
TOYWORLD_DIR = BUNDLED_DIR / "toyworld"  # the bundled diffusion model, ``bundled:toyworld``

__all__ = ["BUNDLED_DIR", "TOYWORLD_DIR", "known_words", "unknown_words"]


@functools.lru_cache(maxsize=4)
def known_words(folder: Path) -> frozenset[str]:
    """The whole words the model at ``folder`` has a token for (its tokenizer's vocab)."""
    vocab = json.loads((Path(folder) / "tokenizer" / "vocab.json").read_text(encoding="utf-8"))
    return frozenset(token[:-4] for token in vocab if token.endswith("</w>"))


def unknown_words(folder: Path, texts: Iterable[str]) -> list[str]:
    """The words of ``texts`` that the model at ``folder`` does not know, each once, in
    the order they first appear (a small model turns them into meaningless pieces)."""
    known = known_words(Path(folder))
    unknown: list[str] = []
    for text in texts:
        for word in re.findall(r"[^\W\d_]+", text.lower()):
            if word not in known and word not in unknown:
                unknown.append(word)
    return unknown
