"""Loading a diffusers pipeline by name and painting panels with it.

A model name is one of:

- ``bundled:NAME`` — a model shipped inside comicgen (``bundled:toyworld``), works offline;
- a local folder written by ``save_pretrained`` (holds ``model_index.json``);
- a Hugging Face hub id such as ``stable-diffusion-v1-5/stable-diffusion-v1-5``.

Every pipeline built on ``UNet2DConditionModel`` works (SD 1.x, SD 2.x, SDXL).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comicgen.bundled import BUNDLED_DIR
from comicgen.errors import ModelError
from comicgen.settings import InfusionSettings, ModelSettings

PAINT_VERSION = 1  # bump when a change to painting alters pixels, to invalidate caches

_SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "pndm": "PNDMScheduler",
}


def _quiet() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# -- where a model lives --------------------------------------------------------------


@dataclass
class ModelSource:
    name: str  # as the person wrote it
    kind: str  # bundled | local | hub
    location: str  # folder path or hub id

    @property
    def folder(self) -> Path | None:
        return Path(self.location) if self.kind in ("bundled", "local") else None


def resolve(name: str, base: Path | None = None) -> ModelSource:
    """Work out what kind of model ``name`` names (no loading, no network)."""
    name = name.strip()
    if name.startswith("bundled:"):
        bundled = name.split(":", 1)[1]
        folder = BUNDLED_DIR / bundled
        if not (folder / "model_index.json").is_file():
            known = sorted(
                p.name for p in BUNDLED_DIR.glob("*") if (p / "model_index.json").is_file()
            )
            raise ModelError(
                f"no bundled model '{bundled}'",
                hint=f"bundled models: {', '.join(known) or 'none installed'}",
            )
        return ModelSource(name, "bundled", str(folder))
    path = Path(name).expanduser()
    if not path.is_absolute() and base is not None and (base / path).exists():
        path = base / path
    if (
        path.exists()
        or name.startswith((".", "/", "~"))
        or os.sep in name.rstrip("/").split("/", 1)[-1]
    ):
        if not path.is_dir():
            raise ModelError(f"model folder '{name}' does not exist", hint="check model.name")
        if not (path / "model_index.json").is_file():
            raise ModelError(
                f"'{name}' is a folder but not a diffusers model (no model_index.json)",
                hint="point model.name at a folder written by pipeline.save_pretrained(), "
                "or at a hub id",
            )
        return ModelSource(name, "local", str(path.resolve()))
    if name.count("/") != 1:
        raise ModelError(
            f"'{name}' is neither 'bundled:NAME', a local folder nor a hub id 'owner/model'",
            hint='e.g. model.name = "bundled:toyworld"',
        )
    return ModelSource(name, "hub", name)


def _hub_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of a hub model, or None (never touches the network)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        return None


def check_model_available(name: str, base: Path | None = None) -> tuple[bool, str]:
    """(available, detail) without loading weights; used by ``comicgen doctor``.
    A relative folder name is looked up in ``base`` (the workspace) first."""
    try:
        source = resolve(name, base)
    except ModelError as exc:
        return False, exc.line()
    if source.kind == "hub":
        snap = _hub_snapshot(source.location)
        if snap is None:
            return False, f"'{name}' is not in the local Hugging Face cache (needs the network)"
        return True, f"cached at {snap}"
    return True, source.location


# -- inspecting a model without loading it ----------------------------------------------


@dataclass
class ModelInfo:
    source: ModelSource
    fingerprint: str  # changes when the weights or configs change
    native_size: int  # pixels, the size the model was trained at
    size_multiple: int  # width and height must be multiples of this


def inspect_model(name: str, base: Path | None = None) -> ModelInfo:
    """Read a model's configs (not its weights) to learn its size and fingerprint."""
    source = resolve(name, base)
    folder = source.folder
    if source.kind == "hub":
        folder = _hub_snapshot(source.location)
        if folder is None:
            raise offline_error(source.location)
    assert folder is not None
    return ModelInfo(source, _fingerprint(folder), *_geometry(folder))


def _geometry(folder: Path) -> tuple[int, int]:
    unet = json.loads((folder / "unet" / "config.json").read_text())
    vae_path = folder / "vae" / "config.json"
    vae_scale = 8
    if vae_path.is_file():
        vae = json.loads(vae_path.read_text())
        vae_scale = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
    sample = unet.get("sample_size", 64)
    if isinstance(sample, list | tuple):
        sample = sample[0]
    levels = len(unet.get("block_out_channels", [0, 0, 0, 0]))
    return int(sample) * vae_scale, vae_scale * 2 ** (levels - 1)


def _fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        rel = path.relative_to(folder).as_posix()
        if path.suffix in (".json", ".txt"):
            digest.update(rel.encode() + b"\0" + path.read_bytes())
        elif path.suffix in (".safetensors", ".bin", ".ckpt", ".pt"):
            size = path.stat().st_size
            with path.open("rb") as handle:
                head = handle.read(65536)
                handle.seek(max(0, size - 65536))
                tail = handle.read(65536)
            digest.update(rel.encode() + str(size).encode() + head + tail)
    return digest.hexdigest()[:16]


def offline_error(repo_id: str) -> ModelError:
    return ModelError(
        f"model '{repo_id}' is not in the local Hugging Face cache and the hub cannot be "
        "reached (offline?)",
        hint=f"download it on a connected machine ('hf download {repo_id}'), or set "
        "model.name to a local folder written by save_pretrained, or use 'bundled:toyworld'",
    )


# -- devices ------------------------------------------------------------------------------


def pick_device(requested: str = "auto") -> str:
    """The device to paint on; ModelError (before anything is loaded) when ``requested``
    is not a device name, or names one this machine does not have."""
    import torch

    from comicgen.settings import check_device

    try:
        check_device(requested)
    except ValueError as exc:
        raise ModelError(f"--device: {exc}") from None
    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(
                f"device '{requested}' asked for, but no CUDA GPU is available",
                hint='use --device cpu or device = "auto"',
            )
        if requested == "mps" and not torch.backends.mps.is_available():
            raise ModelError(
                "device 'mps' asked for, but MPS is not available", hint="use --device cpu"
            )
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, requested: str = "auto"):
    import torch

    if requested == "auto":
        return torch.float32 if device == "cpu" else torch.float16
    return getattr(torch, requested)


def _speed_ups(pipe, settings: ModelSettings) -> None:
    """The opt-in memory and speed settings of ``[model]`` (SDPA attention is diffusers'
    default with torch 2, so it needs no switch)."""
    import torch

    if settings.attention_slicing:
        pipe.enable_attention_slicing()
    if settings.vae_slicing:
        pipe.vae.enable_slicing()
    if settings.vae_tiling:
        pipe.vae.enable_tiling()
    if settings.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
    if settings.compile:
        # in place (nn.Module.compile): the U-Net stays the same object, so Infusion's
        # hooks attach to it as usual (adding or removing hooks triggers a recompile)
        pipe.unet.compile()


# -- painting --------------------------------------------------------------------------


@dataclass
class PaintJob:
    """Everything that decides one panel's pixels."""

    prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    negative_prompt: str = ""
    guidance_rescale: float | None = None  # None: recommended_guidance_rescale()
    characters: Sequence[Any] = ()  # comicgen.infusion.CharacterRefs
    infusion: InfusionSettings = field(default_factory=InfusionSettings)


StepCallback = Callable[[int, int], None]  # (step done, total steps)


def recommended_guidance_rescale(scheduler_config) -> float:
    """0.7 for a model trained with zero terminal SNR (Lin et al. 2023 recommend rescaling
    classifier-free guidance with it: without, panels come out over-exposed), else 0."""
    return 0.7 if scheduler_config.get("rescale_betas_zero_snr", False) else 0.0


class Painter:
    """A loaded pipeline on its device, painting one panel (or a batch) at a time."""

    def __init__(self, pipe, info: ModelInfo, device: str, dtype, scheduler: str = "default"):
        self.pipe = pipe
        self.info = info
        self.device = device
        self.dtype = dtype
        self.scheduler = scheduler
        self.feature_cache = None

    @classmethod
    def load(
        cls,
        settings: ModelSettings,
        *,
        info: ModelInfo | None = None,
        scheduler: str = "default",
        base: Path | None = None,
    ) -> Painter:
        _quiet()
        import torch

        info = info or inspect_model(settings.name, base)
        device = pick_device(settings.device)
        dtype = pick_dtype(device, settings.dtype)
        pipe = _load_pipeline(info.source, dtype)
        if scheduler != "default":
            import diffusers

            cls_name = _SCHEDULERS[scheduler]
            pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config)
        try:
            if settings.cpu_offload:
                if not device.startswith("cuda"):
                    raise ModelError(
                        f"model.cpu_offload needs a CUDA GPU, but the device is {device}",
                        hint="set model.cpu_offload = false, or use --device cuda",
                    )
                pipe.enable_model_cpu_offload(device=device)
            else:
                pipe = pipe.to(device)
        except torch.OutOfMemoryError:
            raise out_of_memory(device) from None
        _speed_ups(pipe, settings)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, info, device, dtype, scheduler)

    def auto_batch_size(self, width: int, height: int) -> int:
        """How many panels to paint per call (``--batch-size auto``).

        On a GPU: as many as fit in half of the free memory, by a rough estimate of
        the activations per image (both guidance halves); on the CPU a small fixed
        batch, which keeps the cores busy without growing memory much.
        """
        import torch

        if self.device.startswith("cuda"):
            free, _total = torch.cuda.mem_get_info(torch.device(self.device))
            bytes_per_value = 2 if self.dtype in (torch.float16, torch.bfloat16) else 4
            per_image = width * height * 1500 * bytes_per_value * 2  # rough, with CFG
            return int(max(1, min(32, (free // 2) // per_image)))
        return 4

    def paint(self, job: PaintJob, on_step: StepCallback | None = None):
        """Paint one panel; returns a PIL image."""
        return self.paint_batch([job], on_step)[0]

    def paint_batch(self, jobs: Sequence[PaintJob], on_step: StepCallback | None = None):
        """Paint panels that share size, steps and guidance in one batch; each keeps its
        own seed, so the result equals painting them one by one (up to float rounding)."""
        import torch

        first = jobs[0]
        for job in jobs[1:]:
            if (job.width, job.height, job.steps, job.guidance, job.guidance_rescale) != (
                first.width,
                first.height,
                first.steps,
                first.guidance,
                first.guidance_rescale,
            ):
                raise ValueError("a batch must share width, height, steps and guidance")
        rescale = first.guidance_rescale
        if rescale is None:
            rescale = recommended_guidance_rescale(self.pipe.scheduler.config)
        generators = [torch.Generator("cpu").manual_seed(job.seed) for job in jobs]

        def callback(pipe, step, timestep, kwargs):
            if on_step is not None:
                on_step(step + 1, first.steps)
            return kwargs

        context = nullcontext()
        active = [j for j in jobs if j.characters and j.infusion.weight > 0]
        if active:
            if len(active) != len(jobs) or any(
                _refs_signature(j) != _refs_signature(first) for j in jobs
            ):
                raise ValueError("a batch of infused panels must share characters and settings")
            from comicgen.infusion import FeatureCache, infused

            if self.feature_cache is None:
                # the characters' reference features, reused by every later panel
                # that shows the same characters (one U-Net pass per step then)
                self.feature_cache = FeatureCache(max_bytes=first.infusion.cache_mb * 1024**2)
            context = infused(
                self.pipe,
                list(first.characters),
                first.infusion,
                height=first.height,
                width=first.width,
                num_inference_steps=first.steps,
                guidance_scale=first.guidance,
                seed=first.seed,
                cache=self.feature_cache,
            )
        try:
            with context, torch.inference_mode():
                result = self.pipe(
                    prompt=[j.prompt for j in jobs],
                    negative_prompt=[j.negative_prompt for j in jobs],
                    height=first.height,
                    width=first.width,
                    num_inference_steps=first.steps,
                    guidance_scale=first.guidance,
                    guidance_rescale=rescale,
                    generator=generators,
                    callback_on_step_end=callback,
                )
        except torch.OutOfMemoryError:
            raise out_of_memory(self.device) from None
        return list(result.images)


def _refs_signature(job: PaintJob) -> tuple:
    refs = tuple((r.name, r.key, r.strength, r.position, r.box) for r in job.characters)
    return refs, job.infusion.model_dump_json()


def round_size(value: int, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def panel_size(info: ModelInfo, size: int | None, aspect: float) -> tuple[int, int]:
    """(width, height) a panel whose frame has ``aspect`` (width / height) is painted at:
    about the area of a ``size`` x ``size`` square (None: the model's native size), in
    the multiples the model needs (see :func:`fit_size`)."""
    side = round_size(size or info.native_size, info.size_multiple)
    return fit_size(aspect, side, info.size_multiple)


def fit_size(aspect: float, side: int, multiple: int, tolerance: float = 0.03) -> tuple[int, int]:
    """(width, height) in multiples of ``multiple`` for a painting of ``aspect``: of sizes
    0.5 to 2 times the area of ``side`` x ``side``, the nearest that area within
    ``tolerance`` of ``aspect``, else the nearest aspect (a coarse model, 64 px in steps of
    16, misses some; the frame meets the rest: ``layout.compose.meet_painting``)."""
    area, best = side * side, None
    for h in range(multiple, int(math.sqrt(area * 2 / min(aspect, 1.0))) + 1, multiple):
        low = max(multiple, math.floor(h * aspect / multiple) * multiple)
        for w in (low, low + multiple):
            ratio = w * h / area
            miss = abs(math.log(w / h / aspect))
            key = (max(miss - math.log1p(tolerance), 0.0), abs(math.log(ratio)))
            if 0.5 <= ratio <= 2 and (best is None or key < best[0]):
                best = (key, w, h)
    if best is None:  # a model whose multiple is larger than its native size
        w, h = side * math.sqrt(aspect), side / math.sqrt(aspect)
        return round_size(round(w), multiple), round_size(round(h), multiple)
    return best[1], best[2]


def out_of_memory(device: str) -> ModelError:
    return ModelError(
        f"out of memory on {device}",
        hint='try a smaller size (settings.size), --device cpu, dtype = "float16", or '
        "model.attention_slicing = true",
    )


def _load_pipeline(source: ModelSource, dtype):
    _quiet()
    from diffusers import DiffusionPipeline

    kwargs: dict[str, Any] = {"torch_dtype": dtype}
    if source.kind == "hub":
        folder = _hub_snapshot(source.location)
        if folder is None:
            if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
                raise offline_error(source.location)
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(source.location))
            except Exception:  # noqa: BLE001 - network and auth errors alike
                raise offline_error(source.location) from None
    else:
        folder = Path(source.location)
    index = json.loads((folder / "model_index.json").read_text())
    if "safety_checker" in index:
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # loading a local folder takes a moment: its progress bars and the API-rename
    # FutureWarnings (torch_dtype -> dtype in newer diffusers) are noise in comicgen's output
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"cannot load model '{source.name}': {str(exc).splitlines()[0][:200]}",
            hint="is it a complete diffusers folder (model_index.json, unet/, vae/, …)?",
        ) from None
