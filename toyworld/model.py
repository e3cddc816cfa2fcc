"""The bundled model's architecture: Stable Diffusion's components, sized for the toy world.

``AutoencoderKL`` (x4 downsampling: 64x64 RGB <-> 8x16x16 latents), a ``CLIPTextModel`` with a
``CLIPTokenizer`` whose vocabulary and merges are written here from the world's caption
vocabulary, a ``UNet2DConditionModel`` and a DPM-Solver++ scheduler.  Everything is built from
config, so ``StableDiffusionPipeline.from_pretrained`` loads the saved folder like any hub model.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from toyworld.world import vocabulary

LATENT_SIZE = 16  # 64 / 4: the VAE downsamples x4
MAX_TOKENS = 64  # tokenizer.model_max_length (captions are at most ~45 tokens)
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 128),
    layers_per_block=1,
    latent_channels=8,  # 8x16x16 latents: 6x compression keeps 1-pixel outlines, eyes and hats
    norm_num_groups=8,  # 4+ channels per group everywhere (1 per group strips colour)
    sample_size=64,
    mid_block_add_attention=False,
)

TEXT_CONFIG = dict(
    hidden_size=128,
    intermediate_size=512,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=MAX_TOKENS,
    hidden_act="quick_gelu",
    projection_dim=128,
)

UNET_CONFIG = dict(
    sample_size=LATENT_SIZE,
    in_channels=8,
    out_channels=8,
    down_block_types=("CrossAttnDownBlock2D",) * 3,
    up_block_types=("CrossAttnUpBlock2D",) * 3,
    block_out_channels=(32, 64, 128),
    layers_per_block=2,
    cross_attention_dim=128,
    attention_head_dim=4,  # diffusers: this is the number of heads
    norm_num_groups=8,
)

# Stable Diffusion's beta schedule, rescaled to zero terminal SNR, with v-prediction and
# "trailing" steps (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
# Flawed"; SD 2.x is v-prediction too).  With SD's own schedule the last step still holds
# ~7% of the signal, and a 16x16 latent's big flat areas (sky, a body) stay readable from
# x_T: the model then never learned to take them from the text (the sky followed the seed,
# not the prompt).  With zero terminal SNR the first step sees noise only, so the text
# decides.
SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    steps_offset=1,
    clip_sample=False,
    set_alpha_to_one=False,
    timestep_spacing="trailing",
)


# --- tokenizer -------------------------------------------------------------------------
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode character table."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=False))


# Words added to the vocabulary after the first shipped model: their tokens are learned
# after the first generation's (whose token ids stay as they were, so the text encoder's
# embedding keeps its rows and only grows).
LATER_WORDS = ("ahead", "facing")


def build_bpe(
    words: list[str], later: tuple[str, ...] = LATER_WORDS
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-pair encoding on ``words`` until each is one token.

    Base symbols are all 256 byte characters with and without ``</w>`` (so any text
    tokenizes); merges are learned greedily (most frequent pair first, ties by name), so that
    applying them in rank order - what ``tokenizers`` does - rebuilds each word.  Every merge
    result is in the vocabulary.  Words in ``later`` are learned afterwards (the earlier
    merges applied to them first), their tokens numbered after the end token.
    """
    base = list(bytes_to_unicode().values())
    vocab_list = base + [c + "</w>" for c in base]
    first = [w for w in words if w not in later]
    merges: list[tuple[str, str]] = []
    _learn_merges([list(w[:-1]) + [w[-1] + "</w>"] for w in first], merges, vocab_list)
    vocab_list += [BOS, EOS]
    seqs = [list(w[:-1]) + [w[-1] + "</w>"] for w in words if w in later]
    for pair in merges:
        seqs = [_merge(s, pair) for s in seqs]
    _learn_merges(seqs, merges, vocab_list)
    return {t: i for i, t in enumerate(vocab_list)}, merges


def _merge(seq: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(seq):
        if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


def _learn_merges(seqs: list[list[str]], merges: list, vocab_list: list[str]) -> None:
    """Greedy BPE on ``seqs`` until each is one symbol (appends to merges and vocab_list)."""
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for s in seqs:
            for a, b in zip(s, s[1:], strict=False):
                pairs[(a, b)] += 1
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged = best[0] + best[1]
        if merged not in vocab_list:
            vocab_list.append(merged)
        seqs = [_merge(s, best) for s in seqs]


_VOCAB_CACHE: dict[str, int] | None = None


def token_vocab() -> dict[str, int]:
    global _VOCAB_CACHE
    if _VOCAB_CACHE is None:
        _VOCAB_CACHE = build_bpe(vocabulary())[0]
    return _VOCAB_CACHE


def write_tokenizer_files(folder: Path) -> None:
    """Write vocab.json, merges.txt and the tokenizer configs of a CLIPTokenizer."""
    vocab, merges = build_bpe(vocabulary())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}, indent=2
        ),
        encoding="utf-8",
    )
    cfg = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_TOKENS,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": EOS,
        "unk_token": EOS,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")


def load_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder))


def caption_ids(text: str, max_length: int = MAX_TOKENS) -> list[int]:
    """Token ids of an in-vocabulary caption, padded with the end token to ``max_length``.

    Identical to the saved CLIPTokenizer's ``padding="max_length", truncation=True`` output
    (checked by the tests), without needing ``transformers`` at training time.
    """
    vocab = token_vocab()
    bos, eos = vocab[BOS], vocab[EOS]
    words = text.lower().replace(",", " , ").replace("-", " - ").split()
    ids = [bos] + [vocab[w + "</w>"] for w in words][: max_length - 2] + [eos]
    return ids + [eos] * (max_length - len(ids))


HAT, FACE, MOUTH = 1, 2, 4  # bits of the part masks (MOUTH: the face crops only)


def data_chunk(
    seed: int,
    start: int,
    count: int,
    variants: int,
    sheet_fraction: float,
    hat_masks: bool = False,
    bucket: str = "square",
    face_masks: bool = False,
    close_up: float | None = None,
    group: int = 1,
):
    """Training data ``start .. start+count`` in the frame of ``bucket``: images (uint8
    N x H x W x 3), ``variants`` training captions per image as token ids (int32 N x
    variants x MAX_TOKENS) and, with ``hat_masks`` / ``face_masks``, the parts at latent
    resolution (uint8 N x H/4 x W/4: bit ``HAT`` where a 4x4-pixel cell holds a pixel the
    hats change, bit ``FACE`` where it overlaps a face's box; else None).  Model sheets
    only in the square bucket.  With ``group`` > 1 the images come in runs of ``group``
    (``start`` a multiple of it): one scene, each character's expression and facing turned
    on by one per image (:func:`vary_face`), so that a batch of a whole run shows what
    the face words change and nothing else.  ``bucket`` "face": the face pass's crops
    (:mod:`toyworld.face_crops`).  Deterministic per index (a process-pool
    worker; no torch)."""
    import random
    from dataclasses import replace

    import numpy as np

    from toyworld import world as W
    from toyworld.face_crops import BUCKET as FACE_BUCKET
    from toyworld.face_crops import face_chunk

    if bucket == FACE_BUCKET:  # the face pass's crops, their faces' cells as part masks
        images, ids, faces = face_chunk(seed, start, count, variants, group=group)
        return images, ids, faces if face_masks else None
    width, height = W.BUCKETS[bucket]
    if bucket != "square":
        sheet_fraction = 0.0  # model sheets are square
    images = np.empty((count, height, width, 3), dtype=np.uint8)
    ids = np.empty((count, variants, MAX_TOKENS), dtype=np.int32)
    cell = W.SIZE // LATENT_SIZE
    masks = None
    if hat_masks or face_masks:
        masks = np.zeros((count, height // cell, width // cell), dtype=np.uint8)
    for i in range(count):
        j = start + i
        scene = W.sample_scene(W.scene_rng(seed, j - j % group), sheet_fraction, bucket, close_up)
        if group > 1:
            scene = vary_face(scene, j % group)
        images[i] = np.asarray(W.render(scene))
        if masks is not None:
            if hat_masks and any(c.hat != "none" for c in scene.characters):
                # exactly where the hats change the picture: rendered again without them
                bare = replace(
                    scene, characters=tuple(replace(c, hat="none") for c in scene.characters)
                )
                diff = np.abs(images[i].astype(np.int16) - np.asarray(W.render(bare))).max(2) > 24
                hh, ww = diff.shape
                cells = diff.reshape(hh // cell, cell, ww // cell, cell).any(axis=(1, 3))
                masks[i] |= cells.astype(np.uint8) * HAT
            if face_masks:
                masks[i] |= W.cell_mask(scene, "face", cell) * FACE
        rng = random.Random(f"captions:{seed}:{start + i}")
        for v in range(variants):
            ids[i, v] = caption_ids(W.training_caption(scene, rng))
    return images, ids, masks


def vary_face(scene, k: int):
    """``scene`` with every character's expression and facing turned on by ``k`` (cycling
    through ``world.EXPRESSIONS`` and ``world.FACINGS``)."""
    from dataclasses import replace

    from toyworld import world as W

    def turn(c):
        e = W.EXPRESSIONS[(W.EXPRESSIONS.index(c.expression) + k) % len(W.EXPRESSIONS)]
        return replace(c, expression=e, look=(c.look + 1 + k) % len(W.FACINGS) - 1)

    return replace(scene, characters=tuple(turn(c) for c in scene.characters))


# --- components ------------------------------------------------------------------------
def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE_CONFIG)


def build_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab = token_vocab()
    cfg = CLIPTextConfig(
        vocab_size=len(vocab),
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[EOS],
        **TEXT_CONFIG,
    )
    return CLIPTextModel(cfg)


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**UNET_CONFIG)


def train_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**{k: v for k, v in SCHEDULE.items() if k != "set_alpha_to_one"})


def sampling_scheduler(kind: str = "dpm"):
    """The scheduler the model is meant to be sampled with (20 steps)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if kind == "ddim":
        return DDIMScheduler(**SCHEDULE)
    cfg = {k: v for k, v in SCHEDULE.items() if k not in ("clip_sample", "set_alpha_to_one")}
    return DPMSolverMultistepScheduler(
        **cfg, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=False
    )


def build_pipeline(vae, text_encoder, unet, tokenizer_folder: Path, scheduler: str = "dpm"):
    """Assemble a StableDiffusionPipeline (no safety checker) from trained components."""
    from diffusers import StableDiffusionPipeline

    tokenizer = load_tokenizer(tokenizer_folder)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sampling_scheduler(scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())
