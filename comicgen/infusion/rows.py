"""The U-Net's inputs with reference rows appended, and the noise-schedule arithmetic."""

from __future__ import annotations

import math
from typing import Any

# per-row inputs repeated from the panel's last (conditional) row for the reference rows
REPEATED = ("class_labels", "timestep_cond", "attention_mask", "encoder_attention_mask")
# ControlNet / T2I residuals: the reference rows get zeros
RESIDUALS = (
    "down_block_additional_residuals",
    "mid_block_additional_residual",
    "down_intrablock_additional_residuals",
)


def alpha_bar(scheduler, t: float) -> float:
    """ᾱ at (fractional) timestep ``t``, interpolated in the scheduler's table."""
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:
        raise ValueError(
            f"{type(scheduler).__name__} has no alphas_cumprod; "
            "use reference_noise: clean with this scheduler"
        )
    t = min(max(t, 0.0), len(alphas) - 1.0)
    lo, hi = math.floor(t), math.ceil(t)
    frac = t - lo
    return float(alphas[lo]) * (1 - frac) + float(alphas[hi]) * frac


def strength_at(settings, step: int, steps: int) -> float:
    """s(t): the infusion's strength at step ``step`` of ``steps`` (``settings.schedule``)."""
    if settings.schedule == "decay":
        return float(settings.decay**step)
    if settings.schedule == "cutoff":
        return 1.0 if step < settings.cutoff * steps else 0.0
    return 1.0


CLEAN_STEP = (-1, 0.0)  # the step key of clean references' features: one for every step


def reuses_features(settings) -> bool:
    """Whether a step may use reference features computed at an earlier step
    (:func:`source_step` names one other than the step itself)."""
    return settings.reference_noise == "clean" or settings.reference_every > 1


def source_step(settings, scheduler, step: int, t: float) -> tuple[int, float]:
    """The (step, timestep) whose reference features step ``step`` uses: the last step
    that ran the reference rows under ``settings.reference_every`` (``step`` itself with
    1, or when the scheduler's timesteps are unknown). Clean references run at t = 0
    whatever the step, so their features are the same at every step: one key for all
    (:data:`CLEAN_STEP`), computed at the first step and reused."""
    if settings.reference_noise == "clean":
        return CLEAN_STEP
    every = settings.reference_every
    timesteps = getattr(scheduler, "timesteps", None)
    source = step - step % every
    if every == 1 or source == step or timesteps is None or len(timesteps) <= source:
        return (step, round(t, 3))
    return (source, round(float(timesteps[source]), 3))


def to_x0(kind: str, x, out, rows_a):
    """The denoised latent a U-Net output implies (``rows_a``: ᾱ per row)."""
    ra, rb = rows_a.sqrt(), (1.0 - rows_a).sqrt()
    if kind == "v_prediction":
        return ra * x - rb * out
    if kind == "sample":
        return out
    return (x - rb * out) / ra


def from_x0(kind: str, x, x0, a: float):
    """The U-Net output (ε, v or the sample) that implies ``x0`` at ᾱ = ``a``."""
    sa, sb = a**0.5, (1.0 - a) ** 0.5
    if kind == "v_prediction":
        return (sa * x - x0) / sb
    if kind == "sample":
        return x0
    return (x - sa * x0) / sb


def reference_rows(chars, values: dict, batch: int, a: float, ref_t: float):
    """The U-Net's ``sample``, ``timestep`` and ``encoder_hidden_states`` with ``chars``'
    reference rows appended (latents noised to ᾱ = ``a``, run at ``ref_t``); the rows of
    each character; the references' pooled embeddings (SDXL) or None."""
    import torch

    sample, timestep = values["sample"], values["timestep"]
    device, dtype = sample.device, sample.dtype
    rows_sample, rows_embeds, rows_pooled, rows_t, spans = [], [], [], [], []
    start = batch
    for ch in chars:
        n = ch.latents.shape[0]
        if ch.latents.shape[-2:] != sample.shape[-2:]:
            raise ValueError(
                f"reference latents are {tuple(ch.latents.shape[-2:])}, the panel's "
                f"{tuple(sample.shape[-2:])}: pass the pipeline's height and width to infused()"
            )
        x = a**0.5 * ch.latents.float() + (1 - a) ** 0.5 * ch.noise.float()
        rows_sample.append(x.to(device, dtype))
        rows_embeds.append(ch.embeds.expand(n, -1, -1))
        if ch.pooled is not None:
            rows_pooled.append(ch.pooled.expand(n, -1))
        rows_t.append(torch.full((n,), ref_t))
        spans.append(slice(start, start + n))
        start += n
    ehs = values["encoder_hidden_states"]
    ref_embeds = torch.cat(rows_embeds).to(ehs.device, ehs.dtype)
    if ref_embeds.shape[1] != ehs.shape[1]:
        ref_embeds = fit_length(ref_embeds, ehs.shape[1])
    panel_t = per_row(timestep, batch, device)
    new = {
        "sample": torch.cat([sample, torch.cat(rows_sample)]),
        "timestep": torch.cat([panel_t, torch.cat(rows_t).to(device, panel_t.dtype)]),
        "encoder_hidden_states": torch.cat([ehs, ref_embeds]),
    }
    return new, spans, (torch.cat(rows_pooled) if rows_pooled else None)


def pad_other_inputs(kwargs: dict, skip: tuple, batch: int, extra: int, pooled) -> None:
    """Every per-row U-Net input beyond ``skip`` extended by ``extra`` rows, in place:
    repeated from the last (conditional) row; residuals zero; SDXL's ``text_embeds`` from
    ``pooled`` (the references' descriptions) when given."""
    import torch

    for name, value in list(kwargs.items()):
        if name in skip:
            continue
        if name == "added_cond_kwargs" and value:
            added = dict(value)
            for k, v in added.items():
                if k == "text_embeds" and pooled is not None:
                    added[k] = torch.cat([v, pooled.to(v.device, v.dtype)])
                else:
                    added[k] = pad_rows(v, batch, extra)
            kwargs[name] = added
        elif name in RESIDUALS:
            kwargs[name] = pad_rows(value, batch, extra, zeros=True)
        elif name in REPEATED:
            kwargs[name] = pad_rows(value, batch, extra)


def per_row(timestep, batch: int, device):
    import torch

    if not isinstance(timestep, torch.Tensor):
        timestep = torch.tensor(timestep, device=device)
    if timestep.ndim == 0 or timestep.numel() == 1:
        return timestep.reshape(1).to(device).expand(batch)
    return timestep.to(device)


def fit_length(embeds, length: int):
    import torch

    if embeds.shape[1] > length:
        return embeds[:, :length]
    pad = embeds[:, -1:].expand(-1, length - embeds.shape[1], -1)
    return torch.cat([embeds, pad], dim=1)


def pad_rows(value: Any, batch: int, extra: int, zeros: bool = False):
    import torch

    if isinstance(value, torch.Tensor):
        if value.ndim == 0 or value.shape[0] != batch:
            return value
        rows = torch.zeros_like(value[:1]) if zeros else value[-1:]
        return torch.cat([value, rows.expand(extra, *value.shape[1:])])
    if isinstance(value, (list, tuple)):
        return type(value)(pad_rows(v, batch, extra, zeros) for v in value)
    return value
