"""The opt-in memory and speed settings of [model] paint the same panels as the defaults."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from comicgen.errors import ModelError
from comicgen.infusion import CharacterRefs
from comicgen.models import inspect_model
from comicgen.painter import Painter, PaintJob
from comicgen.settings import InfusionSettings, ModelSettings
from tests.support.tiny import TINY

TOLERANCE = 2  # of 255: another memory layout or kernel may round differently


def paint(settings: ModelSettings, **kw):
    painter = Painter.load(settings, info=inspect_model(TINY))
    sheet = Image.new("RGB", (64, 64), (236, 236, 236))
    sheet.paste((40, 40, 220), (20, 16, 44, 48))
    refs = [CharacterRefs("Bo", [sheet], None, "a blue square", position="right", key="bo")]
    jobs = [
        PaintJob("a tree, grass", 64, 64, 3, 5.0, seed=1),
        PaintJob("a house", 64, 64, 3, 5.0, seed=2),
    ]
    plain = painter.paint_batch(jobs)
    infused = painter.paint(
        PaintJob(
            "a character", 64, 64, 3, 5.0, seed=3, characters=refs, infusion=InfusionSettings()
        )
    )
    return [np.asarray(i, dtype=np.int16) for i in (*plain, infused)]


@pytest.fixture(scope="module")
def reference():
    return paint(ModelSettings(name=TINY))


@pytest.mark.parametrize(
    "option", ["vae_slicing", "vae_tiling", "channels_last", "attention_slicing"]
)
def test_speed_up_paints_the_same(reference, option):
    images = paint(ModelSettings(name=TINY, **{option: True}))
    for a, b in zip(reference, images, strict=True):
        assert np.abs(a - b).max() <= TOLERANCE, option


def test_cpu_offload_without_a_gpu_is_one_clear_error():
    with pytest.raises(ModelError, match="cpu_offload needs a CUDA GPU"):
        Painter.load(
            ModelSettings(name=TINY, device="cpu", cpu_offload=True),
            info=inspect_model(TINY),
        )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile needs a C compiler")
def test_compiled_unet_paints_the_same(reference):
    images = paint(ModelSettings(name=TINY, compile=True))
    for a, b in zip(reference, images, strict=True):
        assert np.abs(a - b).max() <= TOLERANCE
