"""Attention-level infusion: processors, not forward patches; regional; cached; every layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from comicgen.infusion import FeatureCache, infused
from comicgen.infusion.attention import AttentionContext, InfusionAttnProcessor, attention_weights
from comicgen.settings import InfusionSettings
from tests.test_infusion import SIZE, STEPS, character, generate, no_hooks, pipe_for

ATTENTION = dict(levels=["attention"], reference_every=1)  # rows counted per step


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def processors(pipe) -> dict:
    return {k: type(v) for k, v in pipe.unet.attn_processors.items()}


@pytest.mark.parametrize("layout", ["tiny", "sd15", "sd21", "sdxl"])
def test_every_layout_attends_to_the_sheet_and_restores_its_processors(layout):
    pipe = pipe_for(layout)
    before = processors(pipe)
    plain, _ = generate(pipe, [], InfusionSettings())
    refs = [character(n=2)]
    s = InfusionSettings(**ATTENTION)
    seen = []
    kw = dict(height=SIZE, width=SIZE, num_inference_steps=STEPS, guidance_scale=5.0)
    with infused(pipe, refs, s, seed=0, **kw) as handle:
        ours = {k: v for k, v in pipe.unet.attn_processors.items()}
        seen = [k for k, v in ours.items() if isinstance(v, InfusionAttnProcessor)]
        assert all(isinstance(v, AttnProcessor2_0) for v in ours.values())
        out = pipe(
            prompt="a red cat on the grass",
            negative_prompt="",
            generator=torch.Generator("cpu").manual_seed(0),
            output_type="np",
            **kw,
        ).images
    assert handle.blocks == ["attention"] and handle.reference_rows_run == 2 * handle.unet_calls
    # every self-attention layer, no cross-attention layer
    assert seen and all(k.endswith("attn1.processor") for k in seen)
    assert set(seen) == {k for k in before if k.endswith("attn1.processor")}
    assert np.abs(out - plain).max() > 1e-4, "the sheet changed nothing"
    assert processors(pipe) == before and no_hooks(pipe.unet)
    # the pipeline is plain again afterwards
    again, _ = generate(pipe, [], InfusionSettings())
    assert np.array_equal(again, plain)


def test_weight_zero_is_bit_identical_and_attaches_nothing():
    pipe = pipe_for("tiny")
    plain, _ = generate(pipe, [], InfusionSettings(), seed=3)
    before = processors(pipe)
    for s in (
        InfusionSettings(**ATTENTION, weight=0.0),
        InfusionSettings(**ATTENTION, attention={"weight": 0.0}),
        InfusionSettings(**ATTENTION, attention={"down": [0.0], "mid": 0.0, "up": [0.0]}),
    ):
        out, handle = generate(pipe, [character()], s, seed=3)
        assert not handle.active
        assert np.array_equal(out, plain)
        assert processors(pipe) == before


def test_levels_choose_blocks_out_and_attention():
    pipe = pipe_for("tiny")
    unet = pipe.unet
    assert attention_weights(unet, InfusionSettings()) == {}  # today's default: not on
    w = attention_weights(unet, InfusionSettings(levels=["attention"], attention={"weight": 2.0}))
    assert w and set(w.values()) == {2.0}
    only_mid = attention_weights(
        unet, InfusionSettings(levels=["attention"], attention={"down": [0.0], "up": [0.0]})
    )
    assert only_mid and all(k.startswith("mid_block") for k in only_mid)
    _, handle = generate(pipe, [character()], InfusionSettings(levels=["out"]))
    assert handle.blocks == ["out"]
    _, handle = generate(pipe, [character()], InfusionSettings(levels=["blocks", "attention"]))
    assert "out" not in handle.blocks and "attention" in handle.blocks


def _self_attention_delta(pipe, refs, s):
    """Per-token change of the first self-attention layer's output, infused vs plain (the
    first: its input is the plain panel's, so only the processor changes anything)."""
    name = [k for k in pipe.unet.attn_processors if k.endswith("attn1.processor")][0]
    module = pipe.unet.get_submodule(name.rsplit(".", 1)[0])
    seen = {}
    kw = dict(height=SIZE, width=SIZE, num_inference_steps=1, guidance_scale=5.0)
    for key, r in (("plain", []), ("infused", refs)):
        with infused(pipe, r, s, seed=0, **kw):
            h = module.register_forward_hook(
                lambda m, a, o, key=key: seen.__setitem__(key, o[:2].detach().clone())
            )
            try:
                pipe(
                    prompt="a cat",
                    generator=torch.Generator().manual_seed(0),
                    output_type="latent",
                    **kw,
                )
            finally:
                h.remove()
    delta = (seen["infused"] - seen["plain"]).abs().mean(dim=(0, 2))
    side = int(round(delta.numel() ** 0.5))
    return delta.reshape(side, side)


def test_regional_queries_outside_the_box_do_not_see_the_sheet():
    pipe = pipe_for("tiny")
    s = InfusionSettings(**ATTENTION, attention={"down": [1.0, 0.0], "mid": 0.0, "up": [0.0]})
    left = _self_attention_delta(pipe, [character(position="left")], s)
    h, w = left.shape
    assert left[:, : w // 3].mean() > 1e-4
    assert left[:, 2 * w // 3 :].max() < 1e-5  # float rounding of the batched rows at most
    both = _self_attention_delta(
        pipe,
        [character(position="left"), character("bo", (40, 40, 220), position="right")],
        s,
    )
    assert both[:, : w // 3].mean() > 1e-4 and both[:, 2 * w // 3 :].mean() > 1e-4


def test_cached_attention_runs_no_reference_rows_and_matches():
    pipe = pipe_for("sd21")
    refs = [character(n=2)]
    s = InfusionSettings(**ATTENTION)
    cache = FeatureCache(max_bytes=64 * 1024**2)
    uncached_2, _ = generate(pipe, refs, s, seed=2)
    first, h1 = generate(pipe, refs, s, seed=1, cache=cache)
    second, h2 = generate(pipe, refs, s, seed=2, cache=cache)
    assert h1.cache_misses == STEPS and h1.reference_rows_run == 2 * h1.unet_calls
    assert h2.cache_hits == STEPS and h2.reference_rows_run == 0
    np.testing.assert_allclose(second, uncached_2, rtol=0, atol=1e-4)
    assert any(isinstance(k, tuple) and str(k[-1]).startswith("attn:") for k in cache._entries)


@pytest.mark.parametrize("n", [16, 256])  # one masked attention; split at SPLIT_MIN
@pytest.mark.parametrize("two", [False, True])
def test_only_queries_inside_a_box_pay_for_the_sheet(two, n):
    """The split attention (inside queries widened, outside ones plain) equals one masked
    attention of every query over the panel's and the sheet's tokens."""
    import math

    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    rows, heads, d, m1, m2 = 2, 2, 8, 5, 3
    q, k, v = (torch.randn(rows, heads, n, d, generator=g) for _ in range(3))
    mine1 = torch.zeros(n, dtype=torch.bool)
    mine1[2 : n // 2] = True
    mine2 = torch.zeros(n, dtype=torch.bool)
    mine2[n // 3 : n // 2 + 3] = True
    keys = torch.randn(heads, m1 + m2 if two else m1, d, generator=g)
    values = torch.randn_like(keys)
    union = mine1 | mine2 if two else mine1
    inside, outside = union.nonzero().squeeze(1), (~union).nonzero().squeeze(1)
    full = torch.full((n, keys.shape[1]), float("-inf"))
    full[mine1, :m1] = 0.0
    bias = None
    if two:
        full[mine2, m1:] = math.log(0.5)
        bias = full[inside]
    proc = InfusionAttnProcessor(None, "x", 2.0 if two else 1.0, None)
    got = proc._panel(q, k, v, AttentionContext(keys, values, inside, outside, bias, {}))
    mask = torch.cat([torch.zeros(n, n), full + proc.bias], dim=1)
    kk = torch.cat([k, keys[None].expand(rows, -1, -1, -1)], dim=2)
    vv = torch.cat([v, values[None].expand(rows, -1, -1, -1)], dim=2)
    want = F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(
        got[:, :, outside], F.scaled_dot_product_attention(q, k, v)[:, :, outside], atol=1e-6
    )
