"""Batched painting: each panel keeps its own seed, so batches equal single panels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from comicgen.infusion import CharacterRefs
from comicgen.models import inspect_model
from comicgen.painter import Painter, PaintJob
from comicgen.settings import InfusionSettings, ModelSettings
from tests.helpers import comicgen_process, long_story, tiny_workspace
from tests.support.tiny import TINY

TOLERANCE = 2  # of 255: batched matrix products may round differently


@pytest.fixture(scope="module")
def painter():
    return Painter.load(ModelSettings(name=TINY), info=inspect_model(TINY))


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def job(seed: int, prompt: str = "a tree, grass", **kw) -> PaintJob:
    return PaintJob(prompt=prompt, width=64, height=64, steps=3, guidance=5.0, seed=seed, **kw)


def test_plain_batch_equals_single_panels(painter):
    jobs = [job(1), job(2, "a house, snow"), job(3)]
    batch = painter.paint_batch(jobs)
    for j, image in zip(jobs, batch, strict=True):
        assert np.abs(pixels(image) - pixels(painter.paint(j))).max() <= TOLERANCE
    assert np.abs(pixels(batch[0]) - pixels(batch[2])).max() > 10  # seeds differ


def test_infused_batch_equals_single_panels(painter):
    sheet = Image.new("RGB", (64, 64), (236, 236, 236))
    sheet.paste((220, 40, 40), (20, 16, 44, 48))
    refs = [CharacterRefs("Pip", [sheet], None, "a red square", position="left", key="pip")]
    settings = InfusionSettings()
    jobs = [job(s, characters=refs, infusion=settings) for s in (5, 6)]
    batch = painter.paint_batch(jobs)
    for j, image in zip(jobs, batch, strict=True):
        assert np.abs(pixels(image) - pixels(painter.paint(j))).max() <= TOLERANCE
    with pytest.raises(ValueError, match="share characters"):
        painter.paint_batch([jobs[0], job(7)])


def test_guidance_rescale_follows_the_model_unless_set(painter):
    """Empty guidance_rescale: 0 for a model with SD's own schedule, 0.7 for one trained
    with zero terminal SNR (like the bundled model); a set value is used as it is."""
    plain = pixels(painter.paint(job(4)))
    assert np.array_equal(plain, pixels(painter.paint(job(4, guidance_rescale=0.0))))
    rescaled = pixels(painter.paint(job(4, guidance_rescale=0.7)))
    assert np.abs(rescaled - plain).max() > 0
    with pytest.raises(ValueError, match="share"):
        painter.paint_batch([job(4), job(5, guidance_rescale=0.7)])

    original = painter.pipe.scheduler
    painter.pipe.scheduler = type(original).from_config(
        original.config,
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        prediction_type="v_prediction",
    )
    try:
        auto = pixels(painter.paint(job(4)))
        assert np.array_equal(auto, pixels(painter.paint(job(4, guidance_rescale=0.7))))
        assert not np.array_equal(auto, pixels(painter.paint(job(4, guidance_rescale=0.0))))
    finally:
        painter.pipe.scheduler = original


def test_guidance_rescale_is_part_of_the_panel_key():
    from comicgen.render import PanelJob

    base = dict(page=1, index=1, id="1.1", prompt="a tree", negative_prompt="", width=64)
    base |= dict(height=64, steps=3, guidance=5.0, seed=1, scheduler="default", model="m")
    keys = {PanelJob(**base, guidance_rescale=r).compute_key() for r in (None, 0.0, 0.7)}
    assert len(keys) == 3


def test_render_with_batches_matches_render_without(tmp_path):
    outputs = []
    for size in ("1", "4"):
        ws = tiny_workspace(tmp_path / f"b{size}", steps=3)
        (ws.stories_dir / "s.yaml").write_text(long_story(2), encoding="utf-8")
        proc = comicgen_process(ws, "render", "stories/s.yaml", "--batch-size", size)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "6 panels painted" in out, out
        outputs.append(sorted((ws.build_dir / "s" / "panels").glob("*.png")))
    for a, b in zip(*outputs, strict=True):
        assert a.name == b.name
        assert np.abs(pixels(Image.open(a)) - pixels(Image.open(b))).max() <= TOLERANCE
