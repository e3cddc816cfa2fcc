"""The models shipped inside comicgen (``bundled:NAME``): weights and model cards only."""

from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent
TOYWORLD_DIR = BUNDLED_DIR / "toyworld"  # the bundled diffusion model, ``bundled:toyworld``

__all__ = ["BUNDLED_DIR", "TOYWORLD_DIR"]
