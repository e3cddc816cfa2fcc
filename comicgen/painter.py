"""Loading a diffusers pipeline (named as :mod:`comicgen.models` resolves it) and painting
panels with it. Every pipeline built on ``UNet2DConditionModel`` works (SD 1.x, SD 2.x, SDXL).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comicgen.errors import ModelError
from comicgen.faces import FACE_STRENGTH
from comicgen.models import ModelInfo, ModelSource, _hub_snapshot, inspect_model, offline_error
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
    """The opt-in speed settings of ``[model]`` (SDPA attention is diffusers' default with
    torch 2, so it needs no switch; the memory settings are :mod:`comicgen.memory`'s)."""
    import torch

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
    loras: Sequence[Any] = ()  # comicgen.adapters.LoraUse
    embeddings: Sequence[Any] = ()  # comicgen.adapters.EmbeddingUse
    infusion_unet: str = ""  # the U-Net folder of an infused panel ([infusion] unet); "": own
    faces: Sequence[Any] = ()  # comicgen.faces.Face: the faces the face pass repaints
    face_model: str = ""  # the face pass's model folder; "": no face pass
    face_strength: float = FACE_STRENGTH


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
        from comicgen.infusion.unet import UnetSwap

        # the U-Net weights in use ([infusion] unet) and, per U-Net, its feature cache
        self.unets = UnetSwap(pipe)
        self.memory = None  # the comicgen.memory.MemoryPlan it was placed by
        self.adapters = None  # comicgen.adapters.Adapters, once a LoRA or embedding is used
        self._face_painters: dict = {}  # face model folder -> its FacePainter

    @property
    def feature_cache(self):
        """The characters' reference features for the U-Net in use (None until needed)."""
        return self.unets.cache

    @feature_cache.setter
    def feature_cache(self, cache) -> None:
        self.unets.cache = cache

    @classmethod
    def load(
        cls,
        settings: ModelSettings,
        *,
        info: ModelInfo | None = None,
        scheduler: str = "default",
        base: Path | None = None,
        side: int | None = None,
    ) -> Painter:
        _quiet()
        import torch

        info = info or inspect_model(settings.name, base, settings)
        device = pick_device(settings.device)
        dtype = pick_dtype(device, settings.dtype)
        pipe = _load_pipeline(info.source, dtype)
        if settings.vae:
            from comicgen.checkpoints import load_vae

            pipe.register_modules(vae=load_vae(settings.vae, base, info.source, dtype))
        if scheduler != "default":
            import diffusers

            cls_name = _SCHEDULERS[scheduler]
            pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config)
        from comicgen.memory import place

        try:  # the memory plan: offloaded or on the device whole, tiled, sliced
            plan = place(pipe, settings, device, side)
        except torch.OutOfMemoryError:
            raise out_of_memory(device) from None
        _speed_ups(pipe, settings)
        pipe.set_progress_bar_config(disable=True)
        painter = cls(pipe, info, device, dtype, scheduler)
        painter.memory = plan
        return painter

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
        if self.adapters is not None or any(j.loras or j.embeddings for j in jobs):
            from comicgen.adapters import Adapters

            self.adapters = self.adapters or Adapters(self.pipe)
            self.adapters.activate(jobs)

        def callback(pipe, step, timestep, kwargs):
            if on_step is not None:
                on_step(step + 1, first.steps)
            return kwargs

        context = nullcontext()
        active = [j for j in jobs if j.characters and j.infusion.weight > 0]
        self.unets.use(Path(first.infusion_unet) if active and first.infusion_unet else None)
        if active:
            if len(active) != len(jobs) or any(
                _refs_signature(j) != _refs_signature(first) for j in jobs
            ):
                raise ValueError("a batch of infused panels must share characters and settings")
            from comicgen.infusion import FeatureCache, infused

            if self.feature_cache is None:
                # the characters' reference features, reused by every later panel
                # that shows the same characters (one U-Net pass per step then)
                gpu = self.memory.cache_gpu_bytes if self.memory else None  # the plan's cap
                self.feature_cache = FeatureCache(first.infusion.cache_mb * 1024**2, gpu)
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
        return [self._faces(job, image) for job, image in zip(jobs, result.images, strict=True)]

    def _faces(self, job: PaintJob, image):
        """``image`` after the face pass (:mod:`comicgen.faces`), when the job has one."""
        if not (job.faces and job.face_model):
            return image
        from comicgen.faces import FacePainter

        if job.face_model not in self._face_painters:  # one per face model, any strength
            folder = None if job.face_model == "own" else Path(job.face_model)
            self._face_painters[job.face_model] = FacePainter(self.pipe, folder)
        painter = self._face_painters[job.face_model]
        refs = infusion = None
        if painter.infusion is not None and job.characters and job.infusion.weight > 0:
            # a face model trained with the sheet infused reads each face's sheet
            sheets = {ref.name: ref for ref in job.characters}
            refs, infusion = [sheets.get(face.name) for face in job.faces], painter.infusion
        return painter.repaint(
            image,
            job.faces,
            seed=job.seed,
            steps=job.steps,
            guidance=job.guidance,
            negative=job.negative_prompt,
            strength=job.face_strength,
            refs=refs,
            infusion=infusion,
        )


def _refs_signature(job: PaintJob) -> tuple:
    refs = tuple((r.name, r.key, r.strength, r.position, r.box) for r in job.characters)
    return refs, job.infusion.model_dump_json(), job.infusion_unet


def out_of_memory(device: str) -> ModelError:
    return ModelError(
        f"out of memory on {device}",
        hint='try a smaller size (settings.size), model.memory = "low" or "lowest", '
        '--device cpu, or dtype = "float16"',
    )


def _load_pipeline(source: ModelSource, dtype):
    _quiet()
    from diffusers import DiffusionPipeline

    if source.kind == "file":
        from comicgen.checkpoints import load_pipeline

        return load_pipeline(source, dtype)
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
