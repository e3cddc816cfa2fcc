"""Memory plans: the pure planner, the published families' sizes, applying a plan to a
real tiny pipeline (Infusion's hooks with attention slicing and with model and
sequential CPU offload, run on the CPU), the feature cache's GPU cap, and doctor."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest
import torch
from PIL import Image

from comicgen.infusion import CharacterRefs
from comicgen.memory import (
    GIB,
    LEVELS,
    SETTINGS,
    MemoryPlan,
    apply_plan,
    budget,
    estimate_peak,
    level_plan,
    plan_memory,
)
from comicgen.models import inspect_model
from comicgen.modelsize import family_size, size_of_folder
from comicgen.painter import Painter, PaintJob
from comicgen.settings import InfusionSettings, ModelSettings
from tests.support.published import PUBLISHED
from tests.support.tiny import TINY

TOLERANCE = 2  # of 255


@lru_cache
def size(family: str):
    return family_size(family)


@pytest.mark.parametrize("family", ["sd15", "sd21", "sdxl"])
def test_family_layouts_have_the_published_parameter_counts(family):
    got = size(family)
    assert got.params == PUBLISHED[family]
    assert got.family == family
    assert got.native_size == {"sd15": 512, "sd21": 768, "sdxl": 1024}[family]
    assert got.vae_upcast == (family == "sdxl")  # SDXL's pipeline decodes in float32


@pytest.mark.parametrize("family", ["sd15", "sd21", "sdxl"])
def test_each_level_needs_less_than_the_one_before(family):
    s = size(family)
    base = MemoryPlan("auto", "full", "cuda", "float16")
    peaks = [estimate_peak(s, level_plan(base, level, "cuda"), s.native_size) for level in LEVELS]
    assert all(a >= b for a, b in zip(peaks, peaks[1:], strict=False)), peaks
    assert peaks[-1] < peaks[0] / 4
    # float16 weights halve the weights' share; references add U-Net rows
    fp32 = estimate_peak(s, base, s.native_size, 4)
    assert fp32 > 1.5 * peaks[0]
    assert estimate_peak(s, base, s.native_size, references=4) >= peaks[0]
    # the weights alone are a floor of the whole-model plans
    assert peaks[0] > s.total * 2


def test_auto_changes_nothing_on_the_cpu():
    plan = plan_memory("auto", "cpu", 24 * GIB, size("sdxl"))
    assert plan.level == "cpu" and plan.dtype == "float32" and plan.offload == "none"
    assert not (plan.vae_tiling or plan.vae_slicing or plan.attention_slicing)
    assert "nothing changed" in plan.describe()


def test_auto_on_a_gpu_takes_the_fastest_plan_that_fits():
    sd15, sdxl = size("sd15"), size("sdxl")
    assert plan_memory("auto", "cuda", 24 * GIB, sdxl).level == "full"
    assert plan_memory("auto", "cuda", 6 * GIB, sd15).level == "full"
    eight = plan_memory("auto", "cuda:1", 8 * GIB, sdxl)
    assert eight.level == "offload" and eight.offload == "model" and eight.vae_tiling
    assert eight.peak_bytes <= budget(8 * GIB)
    four = plan_memory("auto", "cuda", 4 * GIB, sdxl)
    assert four.level == "sequential" and four.offload == "sequential"
    assert four.cache_gpu_mb == 0  # nothing of the feature cache stays on the GPU
    tight = plan_memory("auto", "cuda", 1 * GIB, sdxl)
    assert tight.level == "sequential" and "may still not fit" in tight.note
    # a larger panel needs more: a plan for 2048 px is at least as lean
    big = plan_memory("auto", "cuda", 12 * GIB, sdxl, side=2048)
    native = plan_memory("auto", "cuda", 12 * GIB, sdxl)
    assert LEVELS.index(big.level) >= LEVELS.index(native.level)
    # SDPA attention on CUDA: slicing would only add the score matrix back
    assert not any(plan_memory(s, "cuda", 4 * GIB, sdxl).attention_slicing for s in SETTINGS)


def test_low_and_lowest():
    sd15 = size("sd15")
    low = plan_memory("low", "cuda", 80 * GIB, sd15)
    assert low.offload == "model" and low.vae_tiling and low.dtype == "float16"
    lowest = plan_memory("lowest", "cuda", 80 * GIB, sd15)
    assert lowest.offload == "sequential"
    mps = plan_memory("low", "mps", 16 * GIB, sd15)  # no offload off CUDA; slicing helps there
    assert mps.offload == "none" and mps.attention_slicing and mps.vae_tiling
    cpu = plan_memory("lowest", "cpu", 16 * GIB, sd15)
    assert cpu.offload == "none" and cpu.vae_tiling and "CUDA" in cpu.note
    with pytest.raises(ValueError, match="expected one of auto, low, lowest"):
        plan_memory("tiny", "cuda", GIB, sd15)
    with pytest.raises(ValueError, match="'auto', 'low' or 'lowest'"):
        ModelSettings(memory="tiny")
    assert plan_memory("auto", "cuda", 8 * GIB, None).note.startswith("model size unknown")


def test_a_folder_is_measured_from_its_configs():
    got = size_of_folder(inspect_model(TINY).source.folder)
    painter = Painter.load(ModelSettings(name=TINY), info=inspect_model(TINY))
    for name, module in painter.pipe.components.items():
        if hasattr(module, "parameters"):
            assert got.params[name] == sum(p.numel() for p in module.parameters())
    assert got.largest_layer > 0 and got.native_size == 64


# -- a plan applied to a real pipeline ----------------------------------------------------


SHEET = Image.new("RGB", (64, 64), (236, 236, 236))
SHEET.paste((40, 40, 220), (20, 16, 44, 48))


def paint(painter: Painter, levels=("blocks", "out")):
    refs = [CharacterRefs("Bo", [SHEET], None, "a blue square", position="right", key="bo")]
    strong = {"attention": {"weight": 16.0}} if "attention" in levels else {}
    settings = InfusionSettings(levels=list(levels), **strong)  # visible on a random model
    jobs = [
        PaintJob("a tree, grass", 64, 64, 3, 5.0, seed=1),
        PaintJob("a character", 64, 64, 3, 5.0, seed=3, characters=refs, infusion=settings),
    ]
    return [np.asarray(painter.paint(job), dtype=np.int16) for job in jobs]


def load(**kw) -> Painter:
    return Painter.load(ModelSettings(name=TINY, **kw), info=inspect_model(TINY))


@pytest.fixture(scope="module")
def reference():
    painter = load()
    return {levels: paint(painter, levels) for levels in (("blocks", "out"), ("attention",))}


def same(a, b) -> bool:
    return all(np.abs(x - y).max() <= TOLERANCE for x, y in zip(a, b, strict=True))


def test_painter_is_placed_by_its_plan():
    painter = load()
    assert painter.memory.level == "cpu" and painter.memory.dtype == "float32"
    assert painter.memory.side == 64 and painter.memory.peak_bytes > 0
    sized = Painter.load(ModelSettings(name=TINY), info=inspect_model(TINY), side=128)
    assert sized.memory.side == 128 and sized.memory.peak_bytes > painter.memory.peak_bytes
    assert not painter.pipe.vae.use_tiling
    low = load(memory="low")
    assert low.memory.vae_tiling and low.pipe.vae.use_tiling and low.memory.offload == "none"


@pytest.mark.parametrize("levels", [("blocks", "out"), ("attention",)])
def test_infusion_with_attention_slicing(reference, levels):
    painter = load(attention_slicing=True)
    assert painter.memory.attention_slicing
    processors = {type(p).__name__ for p in painter.pipe.unet.attn_processors.values()}
    assert "SlicedAttnProcessor" in processors
    images = paint(painter, levels)
    assert same(images, reference[levels])
    assert np.abs(images[1] - paint(load(), ())[1]).max() > 2 * TOLERANCE  # infusion acted
    # the attention level put the sliced processors back afterwards
    after = {type(p).__name__ for p in painter.pipe.unet.attn_processors.values()}
    assert after == processors


@pytest.mark.parametrize("levels", [("blocks", "out"), ("attention",)])
def test_infusion_with_model_cpu_offload_hooks(reference, levels):
    """diffusers' model offload needs an accelerator to save memory; given the CPU as the
    execution device it installs the same Accelerate hooks (each component moved onto the
    device at its forward, the one before it moved off), which is what Infusion's hooks
    and its reference encoding must run beside. The memory saved waits for a GPU."""
    painter = load()
    apply_plan(painter.pipe, replace(painter.memory, offload="model"), "cpu")
    assert painter.pipe._all_hooks
    assert same(paint(painter, levels), reference[levels])


def test_sequential_offload_cannot_run_on_the_cpu():
    """Accelerate's layer-by-layer offload fails with the CPU as the execution device even
    without Infusion (accelerate 1.16: a weight comes back as a plain tensor), so it is
    tested on a GPU only (below); the planner never chooses it off CUDA."""
    assert plan_memory("lowest", "cpu", 64 * GIB, size("sd15")).offload == "none"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("memory", ["low", "lowest"])
@pytest.mark.parametrize("levels", [("blocks", "out"), ("attention",)])
def test_infusion_with_offload_on_a_gpu(memory, levels):
    whole = load(device="cuda", dtype="float32")
    assert whole.memory.level == "full" and whole.memory.offload == "none"
    offloaded = load(device="cuda", dtype="float32", memory=memory)
    assert offloaded.memory.offload == {"low": "model", "lowest": "sequential"}[memory]
    assert offloaded.memory.cache_gpu_mb < whole.memory.cache_gpu_mb
    assert same(paint(offloaded, levels), paint(whole, levels))


def test_explicit_offload_without_a_gpu_is_still_one_clear_error():
    from comicgen.errors import ModelError

    with pytest.raises(ModelError, match="cpu_offload needs a CUDA GPU"):
        load(cpu_offload=True)


def test_feature_cache_gpu_cap_is_a_setting_or_the_plan():
    painter = load()
    paint(painter)
    assert painter.feature_cache.device_bytes == 512 * 1024**2
    capped = load(feature_cache_gpu_mb=3)
    assert capped.memory.cache_gpu_mb == 3
    paint(capped)
    assert capped.feature_cache.device_bytes == 3 * 1024**2
    assert len(capped.feature_cache) > 0


def test_doctor_reports_the_memory_plan(tmp_path):
    from comicgen.doctor import run_checks
    from comicgen.workspace import Workspace

    Workspace.create(tmp_path)
    (tmp_path / "comicgen.toml").write_text(
        (tmp_path / "comicgen.toml").read_text().replace('memory = "auto"', 'memory = "lowest"')
    )
    check = next(c for c in run_checks(tmp_path) if c.name == "memory")
    assert check.status == "ok"
    assert "RAM" in check.detail and "memory = lowest" in check.detail
    assert "offload needs a CUDA GPU" in check.detail and "parameters" in check.detail


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("memory", ["auto", "low", "lowest"])
def test_float16_with_an_upcast_vae_paints_on_a_gpu(memory):
    """Infusion encodes the sheets with the VAE upcast to float32 (force_upcast), which
    must also work while Accelerate's hooks hold the VAE's weights."""
    painter = load(device="cuda", memory=memory)
    painter.pipe.vae.register_to_config(force_upcast=True)
    assert painter.memory.dtype == "float16"
    images = paint(painter)
    assert all(np.isfinite(i).all() and i.std() > 0 for i in images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("memory", ["low", "lowest"])
def test_a_lora_with_infusion_under_offload_on_a_gpu(tmp_path, memory):
    """A LoRA (peft, loaded by diffusers' loader into an offloaded pipeline: diffusers takes
    the offload hooks off, loads, and puts them back — with no device given, so only on a
    GPU) and Infusion together paint what they paint on a pipeline kept whole."""
    from comicgen.adapters import LoraUse, file_sha
    from tests.support.adapters import save_tiny_lora
    from tests.support.tiny import tiny_pipeline

    path = save_tiny_lora(tiny_pipeline("tiny"), tmp_path / "style.safetensors", seed=1)
    refs = [CharacterRefs("Bo", [SHEET], None, "a blue square", position="right", key="bo")]
    job = PaintJob(
        "a character", 64, 64, 3, 5.0, seed=3, characters=refs, infusion=InfusionSettings()
    )
    use = (LoraUse(str(path), 1.0, file_sha(path)),)

    def run(loras, **kw):
        painter = load(device="cuda", dtype="float32", **kw)
        return np.asarray(painter.paint(replace(job, loras=loras)), dtype=np.int16)

    whole = run(use)
    assert np.abs(whole - run(())).mean() > 0.5  # the LoRA acts
    assert np.abs(whole - run(use, memory=memory)).max() <= TOLERANCE
