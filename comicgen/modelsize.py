"""What memory planning knows of a model without loading it: parameters per component,
the largest layer, the U-Net's and VAE's layouts (:class:`ModelSize`), read from a loaded
pipeline, from a diffusers folder's configs (components built on the meta device), or for
the published families SD 1.5, SD 2.1 and SDXL from their layouts written here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelSize:
    """What memory planning needs to know of a model: parameters per component, the
    largest single layer (what sequential offload keeps on the device), and the U-Net's
    and VAE's layouts (for the activations)."""

    family: str  # sd15 | sd21 | sdxl | other
    params: dict[str, int]  # component name -> parameters
    largest_layer: int  # parameters of the largest leaf module
    unet: dict  # the U-Net's config
    vae: dict  # the VAE's config
    vae_upcast: bool = False  # the pipeline decodes in float32 (SDXL with force_upcast)

    @property
    def total(self) -> int:
        return sum(self.params.values())

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.get("block_out_channels", (0,) * 4)) - 1)

    @property
    def native_size(self) -> int:
        sample = self.unet.get("sample_size", 64)
        sample = sample[0] if isinstance(sample, list | tuple) else sample
        return int(sample) * self.vae_scale


def size_of_modules(modules: dict[str, Any]) -> ModelSize:
    """The :class:`ModelSize` of a pipeline's components (loaded, or on the meta device)."""
    import torch

    params: dict[str, int] = {}
    largest = 0
    for name, module in modules.items():
        if not isinstance(module, torch.nn.Module):
            continue
        params[name] = sum(p.numel() for p in module.parameters())
        for leaf in module.modules():
            own = sum(p.numel() for p in leaf.parameters(recurse=False))
            largest = max(largest, own)
    unet = dict(getattr(modules.get("unet"), "config", {}) or {})
    vae = dict(getattr(modules.get("vae"), "config", {}) or {})
    family = guess_family(unet)
    upcast = family == "sdxl" and bool(vae.get("force_upcast", False))
    return ModelSize(family, params, largest, unet, vae, upcast)


def guess_family(unet: dict) -> str:
    if unet.get("addition_embed_type") == "text_time":
        return "sdxl"
    return {768: "sd15", 1024: "sd21"}.get(unet.get("cross_attention_dim"), "other")


def size_of_pipeline(pipe) -> ModelSize:
    return size_of_modules(dict(pipe.components))


def size_of_folder(folder) -> ModelSize:
    """A diffusers folder's :class:`ModelSize`, from its configs alone: every component
    is built on the meta device (no weights read, no memory used)."""
    import importlib
    import json
    from pathlib import Path

    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text())
    modules = {}
    for name, spec in index.items():
        if not (isinstance(spec, list) and len(spec) == 2 and spec[0] in _LIBRARIES):
            continue
        if not (folder / name / "config.json").is_file():
            continue
        cls = getattr(importlib.import_module(spec[0]), spec[1], None)
        if cls is None:
            continue
        modules[name] = _empty(cls, folder / name)
    return size_of_modules(modules)


_LIBRARIES = ("diffusers", "transformers")


def _empty(cls, path, config: dict | None = None):
    """``cls`` built from its config on the meta device."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        if hasattr(cls, "load_config"):  # diffusers
            return cls.from_config(config if config is not None else cls.load_config(path))
        from transformers import AutoConfig

        cfg = config if config is not None else AutoConfig.from_pretrained(path)
        return cls(cfg)


# The published models' layouts (their config.json files, the fields that differ from
# diffusers' and transformers' defaults), for the table and for checks.
_SD_UNET = {"cross_attention_dim": 768, "attention_head_dim": 8, "sample_size": 64}
_SD21_UNET = {
    "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20],
    "use_linear_projection": True,
    "sample_size": 96,
}
_SDXL_UNET = {
    "sample_size": 128,
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20],
    "use_linear_projection": True,
    "cross_attention_dim": 2048,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
_VAE = {
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "force_upcast": True,
}
_CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12}
_OPENCLIP_H = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "hidden_act": "gelu",
}
_OPENCLIP_BIGG = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
FAMILIES = {
    "sd15": ("SD 1.5", _SD_UNET, 512, [("text_encoder", _CLIP_L, False)]),
    "sd21": ("SD 2.1", _SD21_UNET, 768, [("text_encoder", _OPENCLIP_H, False)]),
    "sdxl": (
        "SDXL",
        _SDXL_UNET,
        1024,
        [("text_encoder", _CLIP_L, False), ("text_encoder_2", _OPENCLIP_BIGG, True)],
    ),
}


def family_size(family: str) -> ModelSize:
    """The :class:`ModelSize` of a published family (``sd15``, ``sd21``, ``sdxl``), built
    on the meta device from the layouts above."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    _title, unet, vae_side, texts = FAMILIES[family]
    modules = {
        "unet": _empty(UNet2DConditionModel, None, unet),
        "vae": _empty(AutoencoderKL, None, {**_VAE, "sample_size": vae_side}),
    }
    for name, text, projection in texts:
        cls = CLIPTextModelWithProjection if projection else CLIPTextModel
        modules[name] = _empty(cls, None, CLIPTextConfig(**text))
    return size_of_modules(modules)


def model_size(name: str, base=None) -> ModelSize | None:
    """The :class:`ModelSize` of the model ``name`` names (a diffusers folder, bundled
    or local, or a cached hub snapshot), from its configs; None when it cannot be read."""
    try:
        from comicgen.models import _hub_snapshot, resolve

        source = resolve(name, base)
        if source.kind == "file":  # a single-file checkpoint: its family's shipped configs
            from pathlib import Path

            from comicgen.checkpoints import detect_family, family_folder, read_shapes

            shapes = read_shapes(Path(source.location), name)
            return size_of_folder(family_folder(detect_family(shapes, name)))
        folder = source.folder or _hub_snapshot(source.location)
        return size_of_folder(folder) if folder is not None else None
    except Exception:  # noqa: BLE001 - unknown here; the model check says why
        return None
