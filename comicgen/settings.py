"""Settings shared by the workspace config (``comicgen.toml``) and the story YAML.

The workspace config holds the defaults; a story may override any of them
(``model:``, ``settings:``, ``infusion:``), and a panel may override infusion
again. Every model is ``extra="forbid"`` with bounded fields, so a typo is an
error rather than a silent default.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from comicgen.faces import FACE_STRENGTH

Shape = Literal["auto", "square", "wide", "tall"]
DEVICES = "auto, cpu, cuda, cuda:N (the GPU's number) or mps"


def check_device(value: str) -> str:
    """``value`` when it names a device comicgen can paint on, else ValueError."""
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,2})?", value):
        raise ValueError(f"'{value}' is not a device; use {DEVICES}")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Path_ = Annotated[str, Field(min_length=1, max_length=1000)]
FAMILY_NAMES = ("sd15", "sd21-v", "sd21", "sdxl")


class LoraSpec(Strict):
    """A LoRA file (kohya / A1111 or diffusers format) and how strongly it applies."""

    path: Path_ = Field(
        description="The .safetensors file: relative to the workspace (to the character's "
        "YAML for a character's own), or absolute."
    )
    weight: float = Field(
        1.0, ge=-4.0, le=4.0, description="Its scale; 0 turns it off (a panel may do so)."
    )


class EmbeddingSpec(Strict):
    """A textual-inversion embedding and the trigger word that calls it in a prompt."""

    path: Path_ = Field(description="The .safetensors/.pt/.bin file, as for a LoRA.")
    token: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\S+$")] | None = Field(
        None, description="Its trigger word in prompts; empty: the file's name without suffix."
    )


class ModelSettings(Strict):
    name: str = Field(
        "bundled:toyworld",
        description="Diffusion model: 'bundled:toyworld', a Hugging Face hub id "
        "(e.g. 'stable-diffusion-v1-5/stable-diffusion-v1-5'), a local diffusers folder, "
        "or a single-file SD 1.x/2.x/SDXL checkpoint (.safetensors or .ckpt).",
    )
    family: Literal[FAMILY_NAMES] | None = Field(  # type: ignore[valid-type]
        None,
        description="A single-file checkpoint's family when its weights do not tell: "
        "sd15, sd21-v (SD 2.x 768 v-prediction), sd21 (SD 2.x 512 epsilon), sdxl. "
        "Empty: detected.",
    )
    config: str | None = Field(
        None,
        max_length=1000,
        description="A diffusers folder whose configs and tokenizers build a single-file "
        "checkpoint instead of the shipped family configs (an unusual layout).",
    )
    vae: str | None = Field(
        None,
        max_length=1000,
        description="A VAE replacing the model's: a .safetensors/.ckpt file or a diffusers folder.",
    )
    loras: list[LoraSpec] = Field(
        default_factory=list, max_length=32, description="LoRAs applied to every panel."
    )
    embeddings: list[EmbeddingSpec] = Field(
        default_factory=list,
        max_length=64,
        description="Textual-inversion embeddings; each applies where its token is in a prompt.",
    )
    device: str = Field(
        "auto", description="'auto' (cuda, then mps, then cpu), 'cpu', 'cuda', 'cuda:1', 'mps'."
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return check_device(value)

    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="'auto' is float16 on a GPU and float32 on the CPU."
    )
    attention_slicing: bool = Field(False, description="Lower memory use at some speed cost.")
    vae_slicing: bool = Field(
        False, description="Decode a batch of panels one image at a time (less memory)."
    )
    vae_tiling: bool = Field(
        False, description="Decode large panels in overlapping tiles (much less memory)."
    )
    channels_last: bool = Field(
        False, description="U-Net in channels-last memory format (faster on many GPUs)."
    )
    compile: bool = Field(
        False,
        description="torch.compile the U-Net (render --compile): the first panels are slow "
        "while it compiles, later ones faster; needs a C++ compiler on the CPU.",
    )
    cpu_offload: bool = Field(
        False,
        description="Keep only the component in use on the GPU (enable_model_cpu_offload): "
        "for GPUs with little memory; slower.",
    )
    memory: Literal["auto", "low", "lowest"] = Field(
        "auto",
        description="GPU memory plan (comicgen doctor shows it): 'auto' keeps everything on "
        "the GPU when the model fits, else tiles the VAE's decoding, then offloads to the CPU; "
        "'low' = model CPU offload; 'lowest' = sequential CPU offload (slowest). Changes "
        "nothing on the CPU.",
    )
    feature_cache_gpu_mb: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="GPU memory Infusion's reference-feature cache may use, in MiB (beyond "
        "it, cached features wait on the CPU). Empty: the memory plan's (512 when the model "
        "fits whole, less when offloading, 0 with sequential offload).",
    )


class RenderSettings(Strict):
    size: int | None = Field(
        None,
        ge=16,
        le=2048,
        description="Side of a square panel in pixels; wide/tall panels are 1.5x longer. "
        "Empty: the model's native size.",
    )
    steps: int = Field(20, ge=1, le=200, description="Denoising steps per panel.")
    guidance: float = Field(5.0, ge=0.0, le=30.0, description="Classifier-free guidance scale.")
    guidance_rescale: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Rescale of the guided prediction toward the conditional one's spread "
        "(diffusers' guidance_rescale; against washed-out or over-exposed panels). Empty: "
        "0.7 for models trained with zero terminal SNR, such as the bundled one; 0 otherwise.",
    )
    seed: int = Field(
        1234, ge=0, le=2**32 - 1, description="Base seed; each panel derives its own from it."
    )
    negative_prompt: str = Field("", max_length=2000)
    scheduler: Literal["default", "ddim", "dpm", "euler", "pndm"] = Field(
        "default", description="'default' keeps the scheduler the model ships with."
    )
    upscale: str | None = Field(
        None,
        max_length=1000,
        description="Upscaler run on each painted panel before lettering: "
        "'bundled:toyworld-x4', a path (relative to the workspace) to a super-resolution "
        ".pth/.safetensors file that spandrel loads (ESRGAN, Real-ESRGAN, SwinIR, DAT, ...), "
        "or 'none'. Empty: 'bundled:toyworld-x4' for the bundled model, 'none' otherwise.",
    )

    faces: str = Field(
        "auto",
        max_length=1000,
        description="The face pass, run on each painted panel before upscaling: every "
        "character the prompt names gets its face repainted in a close crop from its own "
        "clause of the prompt (how small faces come to show the asked expression and "
        "facing). 'auto' (the default): the face model the panel's model ships, if any "
        "(the bundled one does; on an infused panel its sheet-trained U-Net repaints each "
        "crop with the character's sheet infused); 'none' or empty: off; 'own': the "
        "panel's own model repaints the crops (ADetailer's way, for large checkpoints); "
        "or a face-model folder (with unet/ and optionally text_encoder/ and vae/) "
        "relative to the workspace.",
    )
    face_strength: float = Field(
        FACE_STRENGTH,
        gt=0.0,
        le=1.0,
        description="How much of each face crop the face pass repaints (image-to-image "
        "strength): higher follows the words more, lower keeps more of the painted face.",
    )

    @field_validator("faces")
    @classmethod
    def _faces_spec(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in ("", "none"):
            return "none"  # not None: a story's "none" must override the workspace's "auto"
        if value.lower() in ("auto", "own"):
            return value.lower()
        return value

    @field_validator("upscale")
    @classmethod
    def _upscale_spec(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("empty upscaler; write 'none' to turn upscaling off")
        if value.lower() == "none":
            return "none"
        if value.startswith("bundled:") and not value.split(":", 1)[1]:
            raise ValueError("'bundled:' needs a name, e.g. 'bundled:toyworld-x4'")
        return value


class LayerWeights(Strict):
    """Infusion weight per U-Net block, by level (0 = the block is not hooked).

    ``down`` and ``up`` are lists with one weight per block level (down: highest
    resolution first; up: lowest resolution first, i.e. diffusers' order); a shorter
    list is padded with its last value, a longer one is cut.
    """

    down: list[float] = Field(
        default_factory=lambda: [0.0, 0.0, 1.0],
        max_length=8,
        description="Weights of the down blocks, highest resolution first.",
    )
    mid: float = Field(1.0, ge=-2.0, le=2.0, description="Weight of the mid block.")
    up: list[float] = Field(
        default_factory=lambda: [1.0, 0.0, 0.0, 0.0],
        max_length=8,
        description="Weights of the up blocks, lowest resolution first (keep the last one, "
        "which paints pixels rather than objects, at 0).",
    )

    out: float = Field(
        1.0,
        ge=-2.0,
        le=2.0,
        description="Weight of the U-Net's output, blended as the denoised latent it predicts.",
    )

    @field_validator("down", "up")
    @classmethod
    def _bounded(cls, values: list[float]) -> list[float]:
        for v in values:
            if not -2.0 <= v <= 2.0:
                raise ValueError(f"layer weight {v} is outside [-2, 2]")
        return values


class AttentionLevel(Strict):
    """Attention-level infusion: the references' self-attention keys and values, masked to
    the character, appended to the panel's own in the chosen blocks' self-attention, so
    that the panel's queries inside a character's box can attend to its sheet."""

    weight: float = Field(
        1.0,
        ge=0.0,
        le=16.0,
        description="Weight of the reference tokens in the softmax (1 = like the panel's own; "
        "0 = off).",
    )
    down: list[float] = Field(
        default_factory=lambda: [1.0],
        max_length=8,
        description="Per down block (highest resolution first): 1 = its self-attention sees "
        "the sheet, 0 = not; multiplies the weight.",
    )
    mid: float = Field(1.0, ge=0.0, le=16.0, description="The mid block's factor.")
    up: list[float] = Field(
        default_factory=lambda: [1.0],
        max_length=8,
        description="Per up block (lowest resolution first), as for down.",
    )

    @field_validator("down", "up")
    @classmethod
    def _bounded(cls, values: list[float]) -> list[float]:
        for v in values:
            if not 0.0 <= v <= 16.0:
                raise ValueError(f"attention factor {v} is outside [0, 16]")
        return values


class InfusionSettings(Strict):
    """How the characters' reference features are infused into each panel."""

    weight: float = Field(1.0, ge=0.0, le=10.0, description="Overall strength; 0 turns it off.")
    mode: Literal["regional", "mean", "seed"] = Field(
        "regional",
        description="'regional': each character only at its place; 'mean': the characters' "
        "features averaged into one, placed over their boxes together; 'seed': the original "
        "method (whole reference frames, unmasked, unplaced, added as they are).",
    )
    combine: Literal["blend", "adain", "add"] = Field(
        "blend",
        description="'blend': move the panel's features toward the reference's inside the "
        "character's mask (weight 1 = replace); 'add': add them, magnitude-matched per channel.",
    )
    levels: list[Literal["blocks", "out", "attention"]] = Field(
        default_factory=lambda: ["blocks", "out"],
        max_length=3,
        description="Where the references enter: 'blocks' (the block outputs, weights in "
        "layers.down/mid/up), 'out' (the denoised latent, layers.out), 'attention' (the "
        "self-attention keys and values, see attention).",
    )
    layers: LayerWeights = Field(default_factory=LayerWeights)
    attention: AttentionLevel = Field(default_factory=AttentionLevel)
    skips: bool = Field(
        False,
        description="Also infuse the skip features that down blocks pass to the up blocks.",
    )
    schedule: Literal["constant", "decay", "cutoff"] = Field(
        "constant", description="Strength over the steps: constant, decay^step, or 1 until cutoff."
    )
    decay: float = Field(0.9, gt=0.0, le=1.0, description="Per-step factor for 'decay'.")
    cutoff: float = Field(
        0.6, ge=0.0, le=1.0, description="Fraction of steps after which 'cutoff' stops."
    )
    cfg: Literal["both", "cond"] = Field(
        "both", description="Infuse both classifier-free-guidance halves or the conditional one."
    )
    reference_noise: Literal["matched", "clean"] = Field(
        "matched",
        description="'matched': references noised to the panel's step; 'clean': unnoised (t=0), "
        "run once per panel (the bundled model's infusion U-Net paints with it).",
    )
    reference_prompt: Literal["description", "empty"] = Field(
        "description",
        description="What the reference rows are conditioned on: the character's description "
        "or the empty prompt.",
    )
    reference_seed: int | None = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="Seed of the fixed per-reference noise; empty: the panel's seed (then "
        "cached reference features are only reused by panels with the same seed).",
    )
    reference_every: int = Field(
        2,
        ge=1,
        le=50,
        description="Run the reference rows every N steps and reuse their features in the "
        "steps between (a panel whose characters are not cached yet runs faster; 1: every "
        "step; 2, the default, was as good as 1 on the consistency benchmark's tuning split).",
    )
    feather: float = Field(
        0.1, ge=0.0, le=0.5, description="Soft edge of a character's box, as a fraction of it."
    )
    cache_mb: int = Field(
        1024,
        ge=0,
        le=1_000_000,
        description="Size cap of the reference-feature cache in MiB (0 = no cache).",
    )
    unet: str = Field(
        "auto",
        min_length=1,
        max_length=1000,
        description="The U-Net that paints panels with characters: 'auto' = the model's "
        "infusion-trained U-Net when its folder ships one, else its own; 'own' = the "
        "model's own; or a U-Net folder (the infusion trainer's OUT/unet).",
    )


class PageSettings(Strict):
    preset: Literal["comic", "square", "webtoon"] = "comic"
    width: int | None = Field(None, ge=100, le=20000, description="Page width in px (96 dpi).")
    height: int | None = Field(None, ge=100, le=100000, description="Page height in px (96 dpi).")
    margin: int = Field(36, ge=0, le=500)
    gutter: int = Field(12, ge=0, le=200)
    dpi: int = Field(150, ge=36, le=1200, description="Resolution of the PNG pages.")
    fonts: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "Fallback fonts for letters the lettering font lacks, tried in order before "
            "the system's: family names ('Noto Sans CJK JP') or font files."
        ),
    )


class WorkspaceConfig(Strict):
    model: ModelSettings = Field(default_factory=ModelSettings)
    render: RenderSettings = Field(default_factory=RenderSettings)
    infusion: InfusionSettings = Field(default_factory=InfusionSettings)
    page: PageSettings = Field(default_factory=PageSettings)


M = TypeVar("M", bound=BaseModel)

_partials: dict[type, type] = {}


def partial(cls: type[M]) -> type[BaseModel]:
    """A copy of ``cls`` whose fields are all optional (None = keep the default)."""
    if cls in _partials:
        return _partials[cls]
    fields: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, Strict):
            annotation = partial(annotation)
        fields[name] = (
            annotation | None,
            Field(None, description=info.description, json_schema_extra=None),
        )
        # keep the bounds of the original field
        fields[name][1].metadata.extend(info.metadata)
    model = create_model(f"{cls.__name__}Override", __base__=Strict, __doc__=cls.__doc__, **fields)
    _partials[cls] = model
    return model


def merge(base: M, *overrides: BaseModel | None) -> M:
    """Apply overrides (partial models or None) on top of ``base``, left to right."""
    data = base.model_dump()
    for override in overrides:
        if override is None:
            continue
        _deep_update(data, override.model_dump(exclude_none=True))
    return type(base).model_validate(data)


def panel_infusion(
    model: dict, config: InfusionSettings, *overrides: BaseModel | None
) -> InfusionSettings:
    """A panel's [infusion]: comicgen.toml's, then the story's and the panel's — on top of
    the settings the model recommends for its infusion U-Net (``model``, from its folder's
    comicgen.json) when ``unet`` stays "auto"; what the person set always wins."""
    merged = merge(config, *overrides)
    if not model or merged.unet != "auto":
        return merged
    data = InfusionSettings(**model).model_dump()
    _deep_update(data, config.model_dump(exclude_unset=True))
    for override in overrides:
        if override is not None:
            _deep_update(data, override.model_dump(exclude_none=True))
    return InfusionSettings.model_validate(data)


def _deep_update(data: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            _deep_update(data[key], value)
        else:
            data[key] = value
