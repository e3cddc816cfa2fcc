"""Single-file checkpoints: one ``.safetensors`` / ``.ckpt`` holding a whole SD model.

This is what model sites hand out: the original (CompVis / Stability) layout of an SD
1.x, SD 2.x or SDXL model in one file. It loads through diffusers' single-file loading
(``from_single_file``). The family is read from the weights' names and shapes; the
component configs (U-Net, VAE, text encoders, scheduler) come from small JSON files
shipped in ``comicgen/data/models/<family>/`` and the CLIP tokenizer from OpenAI's BPE
vocabulary in ``comicgen/data/clip/`` (MIT) — nothing is downloaded.

``[model] family`` names the family when the weights do not tell it (an SD 2.x model
trained for epsilon rather than v-prediction: ``sd21``), and ``[model] config`` points
at a diffusers folder whose configs (and tokenizers) are used instead of the shipped ones
(a model with an unusual layout; the tests' tiny models).
"""

from __future__ import annotations

import gzip
import json
import tempfile
from functools import cache
from pathlib import Path

from comicgen.errors import ModelError

DATA = Path(__file__).resolve().parent / "data"
FAMILIES = {
    "sd15": "SD 1.x",
    "sd21-v": "SD 2.x (768, v-prediction)",
    "sd21": "SD 2.x (512, epsilon)",
    "sdxl": "SDXL",
}
SUFFIXES = (".safetensors", ".ckpt")

# keys of the original layout that tell the parts apart
_UNET = "model.diffusion_model.input_blocks.0.0.weight"
_SD2_CONTEXT = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
_SDXL_ADD = "model.diffusion_model.label_emb.0.0.weight"
_SDXL_TEXT = "conditioner.embedders.1.model.positional_embedding"
_SDXL_REFINER = "conditioner.embedders.0.model.positional_embedding"


def is_single_file(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def family_folder(family: str) -> Path:
    return DATA / "models" / family


def _bad_file(name: str, why: str) -> ModelError:
    return ModelError(
        f"'{name}' is not a checkpoint diffusers understands ({why})",
        hint="model.name takes an SD 1.x / 2.x / SDXL .safetensors or .ckpt file, a "
        "diffusers folder or a hub id",
    )


def read_shapes(path: Path, name: str | None = None) -> dict[str, tuple[int, ...]]:
    """The tensors' names and shapes in a checkpoint file, without reading the weights
    (safetensors: the header; .ckpt: memory-mapped). ModelError when unreadable."""
    name = name or str(path)
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
        except Exception as exc:  # noqa: BLE001 - a corrupt header raises many kinds
            raise _bad_file(name, f"unreadable safetensors: {_why(exc)[:120]}") from None
    import torch

    try:  # weights_only: a .ckpt is a pickle, and no code in it is run
        try:
            data = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as exc:  # saved before torch's zip format: no memory map
            if "mmap" not in str(exc):
                raise
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors alike
        raise _bad_file(name, f"unreadable .ckpt: {_why(exc)[:120]}") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise _bad_file(name, "no state dict inside")
    return {k: tuple(v.shape) for k, v in data.items() if hasattr(v, "shape")}


def detect_family(shapes: dict[str, tuple[int, ...]], name: str) -> str:
    """sd15 | sd21-v | sdxl from the weights' names and shapes (the cues diffusers'
    ``infer_diffusers_model_type`` uses, without needing full-depth text encoders)."""
    if _UNET not in shapes:
        if any(k.startswith(("lora_", "lora_unet", "unet.")) or ".lora_" in k for k in shapes):
            raise _bad_file(name, "it is a LoRA; list it in model.loras")
        raise _bad_file(name, "no Stable Diffusion U-Net in it")
    if shapes[_UNET][1] != 4:
        raise _bad_file(name, f"a U-Net with {shapes[_UNET][1]} input channels (inpainting?)")
    if _SDXL_REFINER in shapes and _SDXL_TEXT not in shapes:
        raise _bad_file(name, "an SDXL refiner, not a base model")
    if _SDXL_ADD in shapes or _SDXL_TEXT in shapes:
        return "sdxl"
    context = shapes.get(_SD2_CONTEXT)
    if context is not None and context[-1] == 1024:
        return "sd21-v"
    if context is not None and context[-1] != 768:
        raise _bad_file(name, f"cross-attention width {context[-1]} is no SD family's")
    return "sd15"


def config_folder(family: str | None, config: str | None, base: Path | None) -> Path:
    """The diffusers folder whose configs build the pipeline: ``config`` (a folder the
    person named) or the shipped one of ``family``."""
    if config:
        folder = Path(config).expanduser()
        if not folder.is_absolute() and base is not None:
            folder = base / folder
        if not (folder / "model_index.json").is_file():
            raise ModelError(
                f"model.config '{config}' is not a diffusers folder (no model_index.json)",
                hint="point it at a folder written by save_pretrained, or leave it out",
            )
        return folder.resolve()
    assert family is not None
    return family_folder(family)


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map of the 256 bytes to printable characters."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars), strict=True))


def clip_files(folder: Path) -> tuple[Path, Path]:
    """Write CLIP's vocab.json and merges.txt (as transformers' CLIPTokenizer reads them)
    into ``folder``, built from OpenAI's BPE file the same way CLIP builds its vocabulary:
    bytes, bytes ending a word, the 48,894 merges, then the two special tokens."""
    lines = gzip.open(DATA / "clip" / "bpe_simple_vocab_16e6.txt.gz").read().decode()
    merges = lines.split("\n")[1 : 49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_file, merges_file


@cache
def _clip_dir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="comicgen-clip-"))
    clip_files(folder)
    return folder


def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """The tokenizer of every SD family (SD 2.x and SDXL's second pad with '!')."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(
        str(_clip_dir()), model_max_length=77, pad_token=pad_token, local_files_only=True
    )


def _tokenizers(family: str) -> dict:
    if family == "sdxl":
        return {"tokenizer": clip_tokenizer(), "tokenizer_2": clip_tokenizer("!")}
    return {"tokenizer": clip_tokenizer("<|endoftext|>" if family == "sd15" else "!")}


def inspect_source(source, settings, base: Path | None):
    """The :class:`~comicgen.models.ModelInfo` of a single file (family detected or
    given, configs chosen) or of any model with a ``[model] vae``: its fingerprint covers
    the weights, the configs and the VAE."""
    import hashlib
    from dataclasses import replace

    from comicgen.models import (
        ModelInfo,
        _buckets,
        _geometry,
        _hub_snapshot,
        folder_fingerprint,
        offline_error,
    )

    if source.kind == "file":
        path = Path(source.location)
        family = settings.family or detect_family(read_shapes(path, source.name), source.name)
        folder = config_folder(family, settings.config, base)
        source = replace(source, family=family, config=str(folder))
        parts = [family, _file_print(path), folder_fingerprint(folder)]
    else:
        folder = source.folder or _hub_snapshot(source.location)
        if folder is None:
            raise offline_error(source.location)
        parts = [folder_fingerprint(folder)]
    if settings.vae:
        vae = resolve_vae(settings.vae, base)
        parts.append(folder_fingerprint(vae) if vae.is_dir() else _file_print(vae))
        source = replace(source, vae=str(vae))
    fingerprint = hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]
    return ModelInfo(source, fingerprint, *_geometry(folder), _buckets(folder))


def _file_print(path: Path) -> str:
    """Size, head and tail of a big file: changes when the file is replaced."""
    import hashlib

    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(65536)
        handle.seek(max(0, size - 65536))
        tail = handle.read(65536)
    return hashlib.sha256(str(size).encode() + head + tail).hexdigest()[:16]


def _quiet_loading():
    import warnings
    from contextlib import ExitStack

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    stack = ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _why(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def load_pipeline(source, dtype):
    """The pipeline in a single file through ``from_single_file``, its configs from
    ``source.config`` (the shipped family folder: tokenizers are then built here)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    family, config = source.family, Path(source.config)
    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    extra: dict = _tokenizers(family) if config == family_folder(family) else {}
    if family != "sdxl":
        extra |= {"safety_checker": None, "feature_extractor": None}
        extra["requires_safety_checker"] = False
    try:
        with _quiet_loading():
            return cls.from_single_file(
                source.location,
                config=str(config),
                local_files_only=True,
                torch_dtype=dtype,
                **extra,
            )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise _bad_file(source.name, f"as {FAMILIES[family]}: {_why(exc)}") from None


def load_vae(spec: str, base: Path | None, source, dtype):
    """``[model] vae``: a single file (configs from the model's) or a diffusers folder
    (an AutoencoderKL folder, or a model folder with vae/)."""
    from diffusers import AutoencoderKL

    path = resolve_vae(spec, base)
    try:
        with _quiet_loading():
            if path.is_dir():
                sub = "vae" if (path / "vae" / "config.json").is_file() else None
                return AutoencoderKL.from_pretrained(
                    str(path), subfolder=sub, local_files_only=True, torch_dtype=dtype
                )
            config = source.config or source.folder or _hub_folder(source)
            return AutoencoderKL.from_single_file(
                str(path),
                config=str(config),
                subfolder="vae",
                local_files_only=True,
                torch_dtype=dtype,
            )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelError(
            f"model.vae '{spec}' is not a VAE diffusers understands ({_why(exc)})",
            hint="a .safetensors/.ckpt VAE of the model's family, or a diffusers "
            "AutoencoderKL folder",
        ) from None


def _hub_folder(source) -> Path:
    from comicgen.models import _hub_snapshot, offline_error

    folder = _hub_snapshot(source.location)
    if folder is None:
        raise offline_error(source.location)
    return folder


def resolve_vae(spec: str, base: Path | None) -> Path:
    path = Path(spec).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.exists():
        raise ModelError(f"model.vae '{spec}' does not exist", hint="check model.vae")
    if path.is_dir() and not any((p / "config.json").is_file() for p in (path, path / "vae")):
        raise ModelError(
            f"model.vae '{spec}' is a folder but holds no VAE config.json",
            hint="a .safetensors/.ckpt VAE, or a diffusers AutoencoderKL folder",
        )
    return path.resolve()
