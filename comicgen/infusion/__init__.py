"""Infusion: the characters' reference features, averaged, in every panel's U-Net.

Usage (the painter)::

    from comicgen.infusion import CharacterRefs, FeatureCache, infused

    with infused(pipe, [refs], settings, height=64, width=64, num_inference_steps=20,
                 guidance_scale=5.0, seed=seed, cache=cache) as handle:
        image = pipe(prompt=..., height=64, width=64, ...).images[0]

See ``docs/infusion.md`` for the method and its settings.
"""

from comicgen.infusion.cache import FeatureCache
from comicgen.infusion.engine import Infuser, InfusionHandle, infused
from comicgen.infusion.features import block_weights
from comicgen.infusion.refs import CharacterRefs, position_box, reference_mask

__all__ = [
    "CharacterRefs",
    "FeatureCache",
    "InfusionHandle",
    "Infuser",
    "block_weights",
    "infused",
    "position_box",
    "reference_mask",
]
