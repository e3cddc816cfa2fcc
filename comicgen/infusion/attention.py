"""Attention-level infusion: the panel's self-attention also sees each character's sheet.

In the chosen blocks, every self-attention layer (``attn1``) gets an
:class:`InfusionAttnProcessor` (through diffusers' ``set_attn_processor``; the previous
processors are put back when the ``infused`` block ends). While a panel is being
infused, the processor

- computes the keys and values of every row as diffusers' ``AttnProcessor2_0`` does;
- takes each character's reference rows' keys and values at the tokens its mask covers
  (the sheet's background dropped), from all its views together — or, for a panel whose
  references were not run at this step, from the ``FeatureCache`` (kept per character,
  step and layer);
- appends them to the panel rows' own keys and values. A panel query inside character
  *c*'s box sees *c*'s tokens with the logit bias ``log(weight)`` (weight 1: like the
  panel's own tokens); queries outside the box see none of them (regional: two
  characters each see their own sheet);
- runs the reference rows' own self-attention unchanged.

Attention finds the matching part of the sheet wherever it is, so the panel's pose and
expression are free to differ from the sheet's (reference-only control, StoryDiffusion's
consistent self-attention and ConsiStory's shared attention work this way).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, NamedTuple

from diffusers.models.attention_processor import AttnProcessor2_0

from comicgen.infusion.geometry import box_window

if TYPE_CHECKING:
    from comicgen.settings import InfusionSettings

TOKEN_THRESHOLD = 0.3  # a reference token is the character's when its mask covers this much
# below this many panel queries outside every box, one masked attention over all queries
# costs less than two attentions (measured on the bundled model's layers)
SPLIT_MIN = 64


def _factor(values: list[float], i: int) -> float:
    if not values:
        return 0.0
    return float(values[min(i, len(values) - 1)])


def attention_weights(unet, settings: InfusionSettings) -> dict[str, float]:
    """Processor name -> weight of every self-attention layer that sees the sheet."""
    if "attention" not in settings.levels:
        return {}
    a = settings.attention
    out = {}
    for name in unet.attn_processors:
        if not name.endswith("attn1.processor"):
            continue
        parts = name.split(".")
        if parts[0] == "down_blocks":
            factor = _factor(a.down, int(parts[1]))
        elif parts[0] == "up_blocks":
            factor = _factor(a.up, int(parts[1]))
        elif parts[0] == "mid_block":
            factor = float(a.mid)
        else:
            factor = 0.0
        weight = settings.weight * a.weight * factor
        if weight > 0:
            out[name] = weight
    return out


def _grid(tokens: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of a layer's token grid, from the latent's size and the number of tokens."""
    h0, w0 = latent_hw
    f = 1
    while f <= 256:
        h, w = math.ceil(h0 / f), math.ceil(w0 / f)
        if h * w == tokens:
            return h, w
        f *= 2
    raise ValueError(f"attention infusion: {tokens} tokens fit no grid of a {h0}x{w0} latent")


class InfusionAttnProcessor(AttnProcessor2_0):
    """Self-attention that also attends to the characters' reference tokens (see module)."""

    def __init__(self, infuser, name: str, weight: float, original):
        super().__init__()
        self.infuser = infuser
        self.name = name
        self.bias = math.log(weight)
        self.original = original

    def __call__(
        self,
        attn,
        hidden_states,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,
        *args,
        **kwargs,
    ):
        call = self.infuser._call
        if call is None or encoder_hidden_states is not None or attention_mask is not None:
            return self.original(
                attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs
            )
        return self._infused(attn, hidden_states, temb, call)

    def _infused(self, attn, hidden_states, temb, call):
        import torch
        import torch.nn.functional as F

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            rows, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(rows, channel, height * width).transpose(1, 2)
            grid = (height, width)
        else:
            grid = _grid(hidden_states.shape[1], tuple(call.sample.shape[-2:]))
        rows = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads

        def heads(x):
            return x.view(rows, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        context = self.infuser.attention_context(self.name, key, value, call, grid)
        if context is None:
            out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0)
        else:
            panel = call.infused_rows
            out = torch.empty_like(query)
            if panel.start > 0:  # the unconditional half, with cfg: cond
                head = slice(0, panel.start)
                out[head] = F.scaled_dot_product_attention(query[head], key[head], value[head])
            if panel.stop < rows:  # the reference rows: their own self-attention
                rest = slice(panel.stop, rows)
                out[rest] = F.scaled_dot_product_attention(query[rest], key[rest], value[rest])
            out[panel] = self._panel(query[panel], key[panel], value[panel], context)
        hidden_states = out.transpose(1, 2).reshape(rows, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(rows, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def _panel(self, query, key, value, context: AttentionContext):
        """The panel rows' attention: queries inside a box also see the reference tokens
        (their own keys first), the others only the panel's own tokens — the same as one
        masked attention over all queries, without its cost outside the boxes."""
        import torch
        import torch.nn.functional as F

        inside, outside = context.inside, context.outside
        n = query.shape[0]
        k = torch.cat([key, context.keys[None].expand(n, -1, -1, -1)], dim=2)
        v = torch.cat([value, context.values[None].expand(n, -1, -1, -1)], dim=2)
        mask = self._mask(query, key.shape[2], context)
        if outside.numel() < SPLIT_MIN:  # small layers: one masked attention is cheaper
            return F.scaled_dot_product_attention(query, k, v, attn_mask=mask)
        out = torch.empty_like(query)
        q = query.index_select(2, outside)
        out[:, :, outside] = F.scaled_dot_product_attention(q, key, value)
        q = query.index_select(2, inside)
        out[:, :, inside] = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out

    def _mask(self, query, tokens: int, context: AttentionContext):
        """The additive mask of :meth:`_panel`'s masked attention (own tokens first, then
        the references'): over every query on small layers, over the queries inside the
        boxes otherwise (None: one character at weight 1, every inside query sees every
        token alike). Kept in the context, which every call of a step shares."""
        import torch

        memo = (self.bias, query.dtype, tokens)
        if memo in context.masks:
            return context.masks[memo]
        inside, m = context.inside, context.keys.shape[1]
        bias = context.bias
        if bias is None and self.bias != 0.0:
            bias = query.new_zeros((inside.numel(), 1))
        if bias is not None:
            bias = (bias + self.bias).to(query.dtype).expand(-1, m)
        mask = None
        if context.outside.numel() < SPLIT_MIN:
            ref = query.new_full((query.shape[2], m), float("-inf"))
            ref[inside] = bias if bias is not None else 0.0
            own = query.new_zeros((query.shape[2], tokens))
            mask = torch.cat([own, ref], dim=1)[None, None]
        elif bias is not None:
            own = query.new_zeros((inside.numel(), tokens))
            mask = torch.cat([own, bias], dim=1)[None, None]
        context.masks[memo] = mask
        return mask


class AttentionContext(NamedTuple):
    """What a panel's self-attention adds at one layer: the characters' reference
    ``keys`` and ``values`` ([heads, M, d]), the panel queries ``inside`` some box and
    those ``outside`` all (token indices), ``bias`` ([len(inside), M], additive; None
    when it is 0 everywhere) and the attention ``masks`` the processor made of them."""

    keys: object
    values: object
    inside: object
    outside: object
    bias: object
    masks: dict


def reference_tokens(ch, key, value, rows: slice, grid: tuple[int, int]):
    """(keys [heads, M, d], values [heads, M, d]) of ``ch``'s reference rows at the tokens
    its masks cover, all views together."""
    h, w = grid
    masks = ch.masks_at(h, w).to(key.device).flatten(1) > TOKEN_THRESHOLD  # [n, N]
    k, v = key[rows], value[rows]  # [n, heads, N, d]
    n, nh, _, d = k.shape
    keep = masks.flatten()
    k = k.transpose(0, 1).reshape(nh, n * h * w, d)[:, keep]
    v = v.transpose(0, 1).reshape(nh, n * h * w, d)[:, keep]
    return k.contiguous(), v.contiguous()


@functools.lru_cache(maxsize=256)
def query_split(boxes: tuple, grid: tuple[int, int], device):
    """(per box a [N] bool of the panel queries inside it, the indices of the queries
    inside any box, of those outside all) — cached, since every layer and step of a grid
    asks the same (the tensors are read-only)."""
    h, w = grid
    mine = [(box_window(box, h, w, 0.0).flatten() > 0.5).to(device) for box in boxes]
    union = mine[0].clone()
    for m in mine[1:]:
        union |= m
    return mine, union.nonzero().squeeze(1), (~union).nonzero().squeeze(1)


class ContextMemo:
    """The attention contexts of one step key and scale, by layer: every call of a step
    key (clean references: the whole panel) sees the same reference tokens, boxes and
    bias, so each layer's context — and the masks made of it — is built once. Only the
    current step key's are kept."""

    def __init__(self):
        self.step: tuple | None = None
        self.contexts: dict = {}

    def get(self, characters, cache, layer: str, key, value, call, grid: tuple[int, int]):
        if self.step != (call.step_key, call.scale):
            self.step, self.contexts = (call.step_key, call.scale), {}
        memo = (layer, grid, key.dtype, key.device)
        if memo not in self.contexts:
            self.contexts[memo] = attention_context(
                characters, cache, layer, key, value, call, grid
            )
        return self.contexts[memo]


def attention_context(characters, cache, layer: str, key, value, call, grid: tuple[int, int]):
    """The :class:`AttentionContext` of every character's reference tokens at attention
    ``layer`` — from this call's reference rows, or from the cache — or None when there
    are none (or no panel query lies in a character's box)."""
    import torch

    found = []
    for ci, ch in enumerate(characters):
        cache_key = ch.key + (call.step_key, f"attn:{layer}")
        if ci in call.rows:
            kv = reference_tokens(ch, key, value, call.rows[ci], grid)
            if cache is not None:
                cache.put(cache_key, kv)
        else:
            kv = cache.get(cache_key) if cache is not None else None
            if kv is None:  # pragma: no cover - the pre-hook checked
                raise RuntimeError(f"infusion: attention of {ch.refs.name!r} not cached")
        k, v = kv
        if k.shape[1] == 0:
            continue
        # the character's strength and the schedule scale its tokens' weight
        found.append((k, v, tuple(ch.box), ch.refs.strength * call.scale))
    if not found:
        return None
    mine, inside, outside = query_split(tuple(f[2] for f in found), grid, key.device)
    if inside.numel() == 0:
        return None
    if len(found) == 1:
        keys, values = found[0][0].to(key.dtype), found[0][1].to(value.dtype)
    else:
        keys = torch.cat([k.to(key.dtype) for k, _, _, _ in found], dim=1)
        values = torch.cat([v.to(value.dtype) for _, v, _, _ in found], dim=1)
    bias = None
    if len(found) > 1 or any(scale != 1.0 for *_, scale in found):
        columns = []
        for (k, _, _, scale), box in zip(found, mine, strict=True):  # -inf outside the box
            col = torch.where(box[inside], math.log(scale), float("-inf"))
            columns.append(col[:, None].expand(-1, k.shape[1]))
        bias = torch.cat(columns, dim=1)
    return AttentionContext(keys, values, inside, outside, bias, {})
