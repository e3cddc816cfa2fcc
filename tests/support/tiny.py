"""Tiny, real diffusers pipelines built from config: for tests and benchmarks.

Every builder here makes genuine diffusers/transformers components (AutoencoderKL,
CLIPTextModel, UNet2DConditionModel, a scheduler, a CLIPTokenizer) with random weights
from a fixed seed, on the CPU in float32, without touching the network:

- ``"tiny"``: a StableDiffusionPipeline small enough that 2 steps at 64x64 take a
  small fraction of a second (VAE factor 4, three U-Net levels, 32-d cross-attention).
- ``"sd15"``, ``"sd21"``, ``"sdxl"``: U-Nets with the real layer layouts of Stable
  Diffusion 1.5, 2.1 and SDXL (block types, layers per block, attention heads,
  linear projection, cross-attention width 768 / 1024 / 2048, SDXL's text-time
  embedding and transformer layers per block, SD 2.1's v-prediction) with channel
  widths cut by 8; the VAE has SD's four levels (factor 8) with small channels.

``tiny_pipeline(layout, seed)`` returns the pipeline; ``save_tiny_pipeline(folder,
layout)`` writes one with ``save_pretrained`` so it loads with ``from_pretrained`` like
any local model.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

Layout = Literal["tiny", "sd15", "sd21", "sdxl"]
LAYOUTS: tuple[str, ...] = ("tiny", "sd15", "sd21", "sdxl")

# Words that get a token of their own (the rest is spelled out letter by letter).
_WORDS = (
    "a an the of and in on with at by to is are red green blue yellow orange purple "
    "pink white black grey brown cat dog man woman girl boy robot hat circle square "
    "triangle star stripes dots plain sky ground grass sand snow tree house rock sun "
    "moon cloud night day left right center close up wide shot portrait character "
    "standing sitting running happy sad angry smiling comic panel"
).split()


def _vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """A small CLIP-style BPE: all bytes (plain and word-final) plus merges for _WORDS.

    Every merge result is itself in the vocabulary, as ``tokenizers`` requires.
    """
    from toyworld.model import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    tokens: list[str] = symbols + [s + "</w>" for s in symbols]
    merges: list[str] = []
    seen_tokens = set(tokens)
    seen_merges: set[str] = set()
    for word in _WORDS:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        # merge left to right: ((w o) r) d</w> ...
        while len(parts) > 1:
            merge = f"{parts[0]} {parts[1]}"
            merged = parts[0] + parts[1]
            if merge not in seen_merges:
                seen_merges.add(merge)
                merges.append(merge)
            if merged not in seen_tokens:
                seen_tokens.add(merged)
                tokens.append(merged)
            parts = [merged] + parts[2:]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def tiny_tokenizer(model_max_length: int = 77, pad_token: str = "<|endoftext|>"):
    """A CLIPTokenizer built offline from a vocab.json/merges.txt written to a temp dir."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    with tempfile.TemporaryDirectory(prefix="comicgen-tok-") as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        merges_file = Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
        merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        return CLIPTokenizer.from_pretrained(
            tmp, model_max_length=model_max_length, pad_token=pad_token
        )


def vocab_size() -> int:
    return len(_vocab_and_merges()[0])


def _text_encoder(hidden: int, *, layers: int, heads: int, projection_dim: int | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=vocab_size(),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        projection_dim=projection_dim or hidden,
        hidden_act="gelu" if projection_dim else "quick_gelu",
        bos_token_id=vocab_size() - 2,
        eos_token_id=vocab_size() - 1,
        pad_token_id=vocab_size() - 1,
    )
    cls = CLIPTextModelWithProjection if projection_dim else CLIPTextModel
    return cls(config).eval()


def _vae(block_out_channels: tuple[int, ...], norm_num_groups: int, scaling_factor: float):
    from diffusers import AutoencoderKL

    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=block_out_channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=norm_num_groups,
        sample_size=64,
        scaling_factor=scaling_factor,
    ).eval()


def _unet(layout: str):
    from diffusers import UNet2DConditionModel

    if layout == "tiny":
        return UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(16, 32, 32),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=2,
            norm_num_groups=8,
        )
    # SD 1.5: 4 levels, 2 layers per block, 8 heads, conv projection, 768-d context.
    sd15 = dict(
        sample_size=8,
        block_out_channels=(40, 80, 160, 160),
        layers_per_block=2,
        down_block_types=(
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        up_block_types=(
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ),
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    if layout == "sd15":
        return UNet2DConditionModel(**sd15)
    if layout == "sd21":
        # SD 2.1: as 1.5, but heads per level (5, 10, 20, 20), linear projection,
        # 1024-d context (OpenCLIP ViT-H), v-prediction.
        return UNet2DConditionModel(
            **(
                sd15
                | dict(
                    cross_attention_dim=1024,
                    attention_head_dim=(5, 10, 20, 20),
                    use_linear_projection=True,
                )
            )
        )
    if layout == "sdxl":
        # SDXL: 3 levels, transformer layers per block (1, 2, 10), heads (5, 10, 20),
        # linear projection, 2048-d context (768 + 1280), text-time added embedding.
        return UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(40, 80, 160),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            use_linear_projection=True,
            cross_attention_dim=2048,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=1280 + 6 * 256,
            norm_num_groups=8,
        )
    raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def tiny_pipeline(layout: Layout = "tiny", seed: int = 0) -> DiffusionPipeline:
    """Build a pipeline with random weights (fixed by ``seed``), CPU, float32, offline."""
    import torch
    from diffusers import (
        DDIMScheduler,
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    sd_schedule = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _unet(layout).eval()
        if layout == "sdxl":
            vae = _vae((16, 16, 32, 32), 8, 0.13025)
            text_encoder = _text_encoder(768, layers=2, heads=12)
            text_encoder_2 = _text_encoder(1280, layers=2, heads=20, projection_dim=1280)
        elif layout == "tiny":
            vae = _vae((8, 16, 16), 4, 0.18215)
            text_encoder = _text_encoder(32, layers=2, heads=4)
        else:
            vae = _vae((16, 16, 32, 32), 8, 0.18215)
            hidden = 768 if layout == "sd15" else 1024
            text_encoder = _text_encoder(hidden, layers=2, heads=hidden // 64)

    common = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if layout == "sdxl":
        scheduler = EulerDiscreteScheduler(
            **sd_schedule, timestep_spacing="leading", steps_offset=1
        )
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tiny_tokenizer(),
            tokenizer_2=tiny_tokenizer(pad_token="!"),
            unet=unet,
            scheduler=scheduler,
            force_zeros_for_empty_prompt=True,
        )
    else:
        if layout == "sd15":
            scheduler = PNDMScheduler(**sd_schedule, skip_prk_steps=True, steps_offset=1)
        elif layout == "sd21":
            scheduler = DDIMScheduler(
                **sd_schedule, prediction_type="v_prediction", steps_offset=1, clip_sample=False
            )
        else:
            scheduler = DDIMScheduler(**sd_schedule, steps_offset=1, clip_sample=False)
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tiny_tokenizer(pad_token="<|endoftext|>" if layout != "sd21" else "!"),
            unet=unet,
            scheduler=scheduler,
            image_encoder=None,
            **common,
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_pipeline(folder: str | Path, layout: Layout = "tiny", seed: int = 0) -> Path:
    """Write a tiny pipeline with ``save_pretrained``; load it with ``from_pretrained``."""
    folder = Path(folder)
    tiny_pipeline(layout, seed).save_pretrained(folder)
    return folder


def tiny_model_dir(layout: Layout = "tiny", seed: int = 0) -> Path:
    """A saved tiny pipeline folder, built once per machine and reused by every process.

    Tests and benchmarks name it as a local model (``model.name = "<this folder>"``), so
    it loads through the same code path as any diffusers folder.  The folder name holds
    the diffusers version and a hash of this file: a change to either builds a new one.
    """
    import hashlib
    import os

    import diffusers

    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    root = Path(os.environ.get("COMICGEN_TEST_MODELS", tempfile.gettempdir()))
    folder = root / f"comicgen-tiny-{layout}-{seed}-{diffusers.__version__}-{digest}"
    if not (folder / "model_index.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=root))
        save_tiny_pipeline(work, layout, seed)
        try:
            work.rename(folder)
        except OSError:  # another process finished first
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    return folder


TINY = str(tiny_model_dir())  # model.name of the tiny pipeline, as a local folder
