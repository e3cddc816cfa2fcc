"""Saving a diffusers pipeline folder as one original-format Stable Diffusion checkpoint.

For tests: a tiny pipeline (``tests.support.tiny``) written as a single ``.safetensors``
or ``.ckpt`` file, in the key layout of the original SD 1.x / 2.x / SDXL checkpoints,
so that it loads through diffusers' single-file loading like a checkpoint downloaded
from a model site.

Adapted from diffusers' ``scripts/convert_diffusers_to_original_stable_diffusion.py``
and ``scripts/convert_diffusers_to_original_sdxl.py``
(https://github.com/huggingface/diffusers, Apache License 2.0, Copyright The
HuggingFace Team): the same key maps, folded into one module, parameterised by the
family instead of guessing it from the text encoder's depth (tiny encoders are shallow),
and with the VAE's attention names of current diffusers (``to_q`` …).
"""

from __future__ import annotations

import re
from pathlib import Path

# -- U-Net ------------------------------------------------------------------------------

_UNET_MAP = [
    # (stable-diffusion, HF Diffusers)
    ("time_embed.0.weight", "time_embedding.linear_1.weight"),
    ("time_embed.0.bias", "time_embedding.linear_1.bias"),
    ("time_embed.2.weight", "time_embedding.linear_2.weight"),
    ("time_embed.2.bias", "time_embedding.linear_2.bias"),
    ("input_blocks.0.0.weight", "conv_in.weight"),
    ("input_blocks.0.0.bias", "conv_in.bias"),
    ("out.0.weight", "conv_norm_out.weight"),
    ("out.0.bias", "conv_norm_out.bias"),
    ("out.2.weight", "conv_out.weight"),
    ("out.2.bias", "conv_out.bias"),
    # SDXL's added (text-time) embedding
    ("label_emb.0.0.weight", "add_embedding.linear_1.weight"),
    ("label_emb.0.0.bias", "add_embedding.linear_1.bias"),
    ("label_emb.0.2.weight", "add_embedding.linear_2.weight"),
    ("label_emb.0.2.bias", "add_embedding.linear_2.bias"),
]

_UNET_RESNET_MAP = [
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("emb_layers.1", "time_emb_proj"),
    ("skip_connection", "conv_shortcut"),
]


def _unet_layer_map(xl: bool) -> list[tuple[str, str]]:
    levels = 3 if xl else 4
    layers: list[tuple[str, str]] = []
    for i in range(levels):
        for j in range(2):
            layers.append((f"input_blocks.{3 * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if (i > 0) if xl else (i < 3):  # SD: no attention in down_blocks.3; SDXL: in 0
                layers.append(
                    (f"input_blocks.{3 * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}.")
                )
        for j in range(3):
            layers.append((f"output_blocks.{3 * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if (i < 2) if xl else (i > 0):
                layers.append((f"output_blocks.{3 * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < levels - 1:
            layers.append(
                (f"input_blocks.{3 * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv.")
            )
            layers.append(
                (f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}.", f"up_blocks.{i}.upsamplers.0.")
            )
    if xl:
        layers.append(("output_blocks.2.2.conv.", "output_blocks.2.1.conv."))
    layers.append(("middle_block.1.", "mid_block.attentions.0."))
    for j in range(2):
        layers.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    return layers


def convert_unet(state: dict, xl: bool) -> dict:
    mapping = {k: k for k in state}
    for sd_name, hf_name in _UNET_MAP:
        if hf_name in mapping:
            mapping[hf_name] = sd_name
    for k, v in mapping.items():
        if "resnets" in k:
            for sd_part, hf_part in _UNET_RESNET_MAP:
                v = v.replace(hf_part, sd_part)
            mapping[k] = v
    layer_map = _unet_layer_map(xl)
    for k, v in mapping.items():
        for sd_part, hf_part in layer_map:
            v = v.replace(hf_part, sd_part)
        mapping[k] = v
    return {"model.diffusion_model." + v: state[k] for k, v in mapping.items()}


# -- VAE --------------------------------------------------------------------------------

_VAE_MAP = [("nin_shortcut", "conv_shortcut"), ("norm_out", "conv_norm_out")]
_VAE_MAP.append(("mid.attn_1.", "mid_block.attentions.0."))
for _i in range(4):
    for _j in range(2):
        _VAE_MAP.append(
            (f"encoder.down.{_i}.block.{_j}.", f"encoder.down_blocks.{_i}.resnets.{_j}.")
        )
    if _i < 3:
        _VAE_MAP.append((f"down.{_i}.downsample.", f"down_blocks.{_i}.downsamplers.0."))
        _VAE_MAP.append((f"up.{3 - _i}.upsample.", f"up_blocks.{_i}.upsamplers.0."))
    for _j in range(3):
        _VAE_MAP.append(
            (f"decoder.up.{3 - _i}.block.{_j}.", f"decoder.up_blocks.{_i}.resnets.{_j}.")
        )
for _i in range(2):
    _VAE_MAP.append((f"mid.block_{_i + 1}.", f"mid_block.resnets.{_i}."))

_VAE_ATTN_MAP = [
    ("norm.", "group_norm."),
    ("q.", "to_q."),
    ("k.", "to_k."),
    ("v.", "to_v."),
    ("proj_out.", "to_out.0."),
]


def convert_vae(state: dict, levels: int) -> dict:
    """The VAE; ``levels`` is its number of blocks (SD's is 4; the original layout
    numbers the decoder's blocks from the bottom, so the map depends on it)."""
    shift = 4 - levels  # a 3-level tiny VAE: up.{2 - i} instead of up.{3 - i}
    vae_map = []
    for sd_part, hf_part in _VAE_MAP:
        match = re.match(r"(decoder\.up|up)\.(\d)\.", sd_part)
        if match:
            sd_part = f"{match.group(1)}.{int(match.group(2)) - shift}." + sd_part[match.end() :]
        vae_map.append((sd_part, hf_part))
    mapping = {k: k for k in state}
    for k, v in mapping.items():
        for sd_part, hf_part in vae_map:
            v = v.replace(hf_part, sd_part)
        mapping[k] = v
    for k, v in mapping.items():
        if "attentions" in k:
            for sd_part, hf_part in _VAE_ATTN_MAP:
                v = v.replace(hf_part, sd_part)
            mapping[k] = v
    out = {}
    for k, v in mapping.items():
        tensor = state[k]
        if re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", v) and tensor.ndim == 2:
            tensor = tensor.reshape(*tensor.shape, 1, 1)  # linear -> 1x1 conv
        out["first_stage_model." + v] = tensor
    return out


# -- text encoders ----------------------------------------------------------------------

_TEXT_MAP = [
    ("transformer.resblocks.", "text_model.encoder.layers."),
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
    (".c_fc.", ".fc1."),
    (".c_proj.", ".fc2."),
    (".attn", ".self_attn"),
    ("ln_final.", "text_model.final_layer_norm."),
    ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
]
_PROTECTED = {re.escape(hf): sd for sd, hf in _TEXT_MAP}
_PATTERN = re.compile("|".join(_PROTECTED))


def convert_open_clip(state: dict) -> dict:
    """A transformers CLIP text encoder in OpenCLIP's layout (SD 2.x, SDXL's second)."""
    import torch

    out: dict = {}
    qkv: dict[str, dict[str, list]] = {"weight": {}, "bias": {}}
    for k, v in state.items():
        match = re.search(r"\.self_attn\.([qkv])_proj\.(weight|bias)$", k)
        if match:
            pre = k[: match.start()] + ".self_attn"
            slot = qkv[match.group(2)].setdefault(pre, [None, None, None])
            slot["qkv".index(match.group(1))] = v
            continue
        if k.endswith("position_ids"):
            continue
        out[_PATTERN.sub(lambda m: _PROTECTED[re.escape(m.group(0))], k)] = v
    for kind, found in qkv.items():
        for pre, tensors in found.items():
            name = _PATTERN.sub(lambda m: _PROTECTED[re.escape(m.group(0))], pre)
            out[f"{name}.in_proj_{kind}"] = torch.cat(tensors)
    if "text_projection.weight" in out:
        out["text_projection"] = out.pop("text_projection.weight").T.contiguous()
    return out


# -- the whole checkpoint ---------------------------------------------------------------


def _text_state(model) -> dict:
    """A CLIP text encoder's weights under transformers' classic names (``text_model.…``;
    transformers 5.6 flattened ``CLIPTextModel``, the original layouts keep the prefix)."""
    out = {}
    for k, v in model.state_dict().items():
        if "position_ids" in k:
            continue
        if not k.startswith(("text_model.", "text_projection")):
            k = "text_model." + k
        out[k] = v
    return out


def original_state_dict(pipe, family: str) -> dict:
    """The original-format state dict of ``pipe`` (family: sd15 | sd21 | sdxl)."""
    xl = family == "sdxl"
    state = convert_unet(pipe.unet.state_dict(), xl)
    state |= convert_vae(pipe.vae.state_dict(), len(pipe.vae.config.block_out_channels))
    text = _text_state(pipe.text_encoder)
    if xl:
        state |= {f"conditioner.embedders.0.transformer.{k}": v for k, v in text.items()}
        second = convert_open_clip(_text_state(pipe.text_encoder_2))
        state |= {f"conditioner.embedders.1.model.{k}": v for k, v in second.items()}
    elif family == "sd21":
        state |= {f"cond_stage_model.model.{k}": v for k, v in convert_open_clip(text).items()}
    else:
        state |= {f"cond_stage_model.transformer.{k}": v for k, v in text.items()}
    return {k: v.detach().contiguous() for k, v in state.items()}


def save_single_file(pipe, path: str | Path, family: str) -> Path:
    """Write ``pipe`` as one checkpoint: ``.safetensors``, or a torch ``.ckpt``
    (``{"state_dict": …}``, as the original training code saved them)."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    state = original_state_dict(pipe, family)
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    return path
