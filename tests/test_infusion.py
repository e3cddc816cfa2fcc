"""Infusion on real tiny pipelines (SD 1.5 / SD 2.1 / SDXL layouts, random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from comicgen.infusion import CharacterRefs, FeatureCache, infused, position_box, reference_mask
from comicgen.infusion.geometry import box_window as _box_window
from comicgen.settings import InfusionSettings, LayerWeights
from tests.support.tiny import save_tiny_pipeline, tiny_pipeline

SIZE = 64
STEPS = 2
# every block level on, so every layout's blocks are exercised
ALL_LAYERS = LayerWeights(down=[0.5], mid=0.5, up=[0.5, 0.5, 0.5, 0.0], out=0.5)

_pipes: dict[str, object] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread (and never stall on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pipe_for(layout: str):
    if layout not in _pipes:
        _pipes[layout] = tiny_pipeline(layout, seed=0)
    return _pipes[layout]


def sheet(color, *, size: int = 64, shape: str = "circle", alpha: bool = False) -> Image.Image:
    """A character alone on a plain (or transparent) background, centred."""
    mode, bg = ("RGBA", (0, 0, 0, 0)) if alpha else ("RGB", (236, 236, 236))
    im = Image.new(mode, (size, size), bg)
    d = ImageDraw.Draw(im)
    box = [size // 4, size // 5, 3 * size // 4, 7 * size // 8]
    if shape == "circle":
        d.ellipse(box, fill=color, outline=(0, 0, 0))
    else:
        d.rectangle(box, fill=color, outline=(0, 0, 0))
    return im


def character(name="pip", color=(220, 40, 40), n=1, **kw) -> CharacterRefs:
    images = [sheet(color, shape="circle" if i % 2 == 0 else "square") for i in range(n)]
    return CharacterRefs(name=name, images=images, masks=None, description=f"a {name}", **kw)


def settings(**kw) -> InfusionSettings:
    kw.setdefault("layers", ALL_LAYERS)
    return InfusionSettings(**kw)


def generate(pipe, refs, s, *, seed=0, cache=None, output_type="np", **extra):
    kw = dict(height=SIZE, width=SIZE, num_inference_steps=STEPS, guidance_scale=5.0)
    with infused(pipe, refs, s, seed=seed, cache=cache, **kw) as handle:
        out = pipe(
            prompt="a red cat on the grass",
            negative_prompt="",
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type=output_type,
            **kw,
            **extra,
        ).images
    return out, handle


def no_hooks(module: torch.nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._forward_hooks_with_kwargs
        for m in module.modules()
    )


@pytest.mark.parametrize("layout", ["tiny", "sd15", "sd21", "sdxl"])
def test_every_layout_infuses(layout):
    pipe = pipe_for(layout)
    plain, _ = generate(pipe, [], settings())
    refs = [character(n=2)]
    seen_in, seen_out = [], []

    kw = dict(height=SIZE, width=SIZE, num_inference_steps=STEPS, guidance_scale=5.0)
    with infused(pipe, refs, settings(), seed=0, **kw) as handle:
        # registered after the infuser's: sees the U-Net input with the reference rows
        # appended, and its output with them stripped
        h1 = pipe.unet.register_forward_pre_hook(
            lambda m, a, k: seen_in.append(
                (
                    a[0].shape,
                    k["encoder_hidden_states"].shape,
                    dict(k.get("added_cond_kwargs") or {}),
                )
            ),
            with_kwargs=True,
        )
        h2 = pipe.unet.register_forward_hook(lambda m, a, o: seen_out.append(o[0].shape))
        try:
            out = pipe(
                prompt="a red cat on the grass",
                negative_prompt="",
                generator=torch.Generator("cpu").manual_seed(0),
                output_type="np",
                **kw,
            ).images
        finally:
            h1.remove()
            h2.remove()
    latent = SIZE // pipe.vae_scale_factor
    assert out.shape == plain.shape == (1, SIZE, SIZE, 3)
    assert np.abs(out - plain).max() > 1e-3, "infusion did not change the image"
    assert handle.blocks and handle.infused_calls == handle.unet_calls >= STEPS
    sample_shape, ehs_shape, added = seen_in[0]
    assert tuple(sample_shape) == (2 + 2, 4, latent, latent)  # 2 CFG rows + 2 references
    assert ehs_shape[0] == 4 and ehs_shape[2] == pipe.unet.config.cross_attention_dim
    if layout == "sdxl":
        assert added["text_embeds"].shape == (4, 1280)
        assert added["time_ids"].shape == (4, 6)
    assert all(tuple(s) == (2, 4, latent, latent) for s in seen_out)
    assert no_hooks(pipe.unet)


@pytest.mark.parametrize("layout", ["tiny", "sdxl"])
def test_weight_zero_and_no_characters_are_bit_identical(layout):
    pipe = pipe_for(layout)
    plain, _ = generate(pipe, [], settings(), seed=3)
    kw = dict(height=SIZE, width=SIZE, num_inference_steps=STEPS, guidance_scale=5.0)
    for refs, s in (
        ([], settings()),
        ([character()], settings(weight=0.0)),
        ([character(strength=0.0)], settings()),
    ):
        with infused(pipe, refs, s, seed=3, **kw) as handle:
            assert not handle.active and no_hooks(pipe.unet)
            out = pipe(
                prompt="a red cat on the grass",
                negative_prompt="",
                generator=torch.Generator("cpu").manual_seed(3),
                output_type="np",
                **kw,
            ).images
        assert np.array_equal(out, plain)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_hooks_removed_after_an_exception_in_the_pipeline(error):
    pipe = pipe_for("tiny")

    def boom(*args, **kwargs):
        raise error("stop")

    kw = dict(height=SIZE, width=SIZE, num_inference_steps=STEPS, guidance_scale=5.0)
    with pytest.raises(error):
        with infused(pipe, [character()], settings(), seed=0, **kw) as handle:
            assert handle.active and not no_hooks(pipe.unet)
            pipe(prompt="a cat", callback_on_step_end=boom, output_type="np", **kw)
    assert not handle.active
    assert no_hooks(pipe.unet)
    # and the pipeline is plain again
    plain_again, _ = generate(pipe, [], settings())
    reference = tiny_pipeline("tiny")
    fresh, _ = generate(reference, [], settings())
    assert np.array_equal(plain_again, fresh)


def test_modes_and_options_run_and_differ():
    pipe = pipe_for("tiny")
    refs = [character(n=2)]
    plain, _ = generate(pipe, [], settings())
    outs = {}
    for name, s in {
        "default": settings(),
        "seed": settings(mode="seed"),
        "mean": settings(mode="mean"),
        "add": settings(combine="add"),
        "skips": settings(skips=True),
        "cond": settings(cfg="cond"),
        "clean": settings(reference_noise="clean"),
        "empty": settings(reference_prompt="empty"),
        "decay": settings(schedule="decay"),
        "adain": settings(combine="adain"),
    }.items():
        outs[name], _ = generate(pipe, refs, s)
        assert np.abs(outs[name] - plain).max() > 1e-4, name
    for name in outs:
        if name not in ("default", "mean"):  # one character: 'mean' is 'regional'
            assert not np.array_equal(outs[name], outs["default"]), name
    # cut off before the first step: nothing added, same as plain
    off, handle = generate(pipe, refs, settings(schedule="cutoff", cutoff=0.0))
    assert handle.infused_calls == 0 and np.array_equal(off, plain)


def test_box_window_is_soft_and_inside_the_box():
    w = _box_window((0.0, 0.0, 0.5, 1.0), 16, 16, feather=0.1)[0, 0]
    assert w.shape == (16, 16)
    assert torch.all(w[:, :7] == 1.0)  # inside, up to the frame's edges: full strength
    assert torch.all(w[:, 8:] == 0.0)  # right half: nothing
    assert 0.0 < w[8, 7] < 1.0  # a soft ramp inside the box's edge
    centre = _box_window((0.25, 0.0, 0.75, 1.0), 16, 16, feather=0.2)[0, 0, 8]
    assert centre[4] < centre[5] < centre[6] == 1.0 and centre[3] == 0.0
    assert position_box("left")[2] <= 0.5 <= position_box("right")[0]
    assert position_box(None) == position_box("center")


def _block_delta(pipe, refs, s, block="up.0"):
    """Output of one block in the first U-Net call, infused minus plain ([C, h, w])."""
    seen = {}

    def capture(key):
        def hook(module, args, output):
            seen[key] = (output[0] if isinstance(output, tuple) else output)[:2].detach().clone()

        return hook

    kind, _, index = block.partition(".")
    module = (
        pipe.unet.mid_block if kind == "mid" else getattr(pipe.unet, f"{kind}_blocks")[int(index)]
    )
    for key, r in (("plain", []), ("infused", refs)):
        kw = dict(height=SIZE, width=SIZE, num_inference_steps=1, guidance_scale=5.0)
        with infused(pipe, r, s, seed=0, **kw):
            handle = module.register_forward_hook(capture(key))  # after the infuser's hook
            try:
                pipe(
                    prompt="a cat",
                    generator=torch.Generator().manual_seed(0),
                    output_type="latent",
                    **kw,
                )
            finally:
                handle.remove()
    return (seen["infused"] - seen["plain"]).abs().mean(dim=(0, 1))


def test_regional_features_land_only_in_their_box():
    pipe = pipe_for("tiny")
    s = settings(layers=LayerWeights(down=[0.0], mid=0.0, up=[0.0, 1.0, 0.0]), feather=0.0)
    left = _block_delta(pipe, [character(position="left")], s, "up.1")
    h, w = left.shape
    assert left[:, : w // 2].sum() > 0
    # nothing outside the left box (but float rounding: the panel rows ran in a batch with
    # the reference rows, which changes the matrix kernels' blocking on some thread counts)
    assert left[:, w // 2 :].abs().max() < 1e-5
    right = _block_delta(pipe, [character(position="right")], s, "up.1")
    assert right[:, : w // 2].abs().max() < 1e-5
    assert right[:, w // 2 :].sum() > 0
    # a box given as fractions wins over the position
    boxed = _block_delta(pipe, [character(position="left", box=(0.5, 0.5, 1.0, 1.0))], s, "up.1")
    assert boxed[: h // 2].abs().max() < 1e-5 and boxed[:, : w // 2].abs().max() < 1e-5
    # two characters: each changes its own side, with its own features
    both = _block_delta(
        pipe,
        [
            character(position="left"),
            character("bo", (40, 40, 220), position="right"),
        ],
        s,
        "up.1",
    )
    assert torch.allclose(both[:, : w // 2], left[:, : w // 2], atol=1e-5)
    assert both[:, w // 2 :].sum() > 0 and not torch.allclose(both[:, w // 2 :], right[:, w // 2 :])


def test_output_level_changes_only_the_box_in_one_step():
    """The output level blends the denoised estimate inside the mask; outside it the
    U-Net's prediction is the plain one (checked on the first step, before it spreads)."""
    pipe = pipe_for("sd21")  # v-prediction
    s = settings(layers=LayerWeights(down=[0.0], mid=0.0, up=[0.0], out=1.0), feather=0.0)
    kw = dict(height=SIZE, width=SIZE, num_inference_steps=1, guidance_scale=5.0)
    outs = []
    for refs in ([], [character(position="left")]):
        with infused(pipe, refs, s, seed=0, **kw):
            outs.append(
                pipe(
                    prompt="a cat",
                    generator=torch.Generator().manual_seed(0),
                    output_type="latent",
                    **kw,
                ).images
            )
    change = (outs[1] - outs[0]).abs().amax(dim=(0, 1))
    w = change.shape[1]
    assert change[:, : w // 2].max() > 1e-3
    assert change[:, w // 2 :].max() < 1e-5


def test_regional_change_in_the_image_follows_the_box():
    pipe = pipe_for("tiny")
    s = settings(layers=LayerWeights(down=[0.0], mid=0.0, up=[0.0, 1.0, 0.0]))
    plain, _ = generate(pipe, [], s, output_type="latent")
    out, _ = generate(pipe, [character(position="left")], s, output_type="latent")
    change = (out - plain).abs().mean(dim=(0, 1))
    w = change.shape[1]
    assert change[:, : w // 2].mean() > 2 * change[:, w // 2 :].mean()


def test_cached_features_equal_the_uncached_path():
    pipe = pipe_for("sd21")
    refs = [character(n=2)]
    s = settings(reference_every=1)  # every step runs (or reads) the references
    cache = FeatureCache(max_bytes=64 * 1024**2)
    uncached_1, h0 = generate(pipe, refs, s, seed=1)
    uncached_2, _ = generate(pipe, refs, s, seed=2)
    first, h1 = generate(pipe, refs, s, seed=1, cache=cache)
    second, h2 = generate(pipe, refs, s, seed=2, cache=cache)
    assert h1.cache_misses == STEPS and h1.reference_rows_run == h0.reference_rows_run
    # the second panel runs no reference rows: one U-Net pass per step, like plain
    assert h2.cache_hits == STEPS and h2.cache_misses == 0 and h2.reference_rows_run == 0
    assert np.array_equal(first, uncached_1)
    # the reference rows only differ in their batch neighbours: float32 rounding at most
    np.testing.assert_allclose(second, uncached_2, rtol=0, atol=1e-4)
    assert len(cache) > 0 and cache.nbytes > 0


def ddim_panel(refs, steps, *, levels, cache=None, seed=3, **kw):
    """(image, handle) of a tiny SD 1.5 panel painted with DDIM (one U-Net call per step)
    under ``settings(levels=levels, **kw)``."""
    from diffusers import DDIMScheduler

    pipe = pipe_for("sd15")
    own = pipe.scheduler
    pipe.scheduler = DDIMScheduler.from_config(own.config)
    call = dict(height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=5.0)
    try:
        with infused(
            pipe, refs, settings(levels=levels, **kw), seed=seed, cache=cache, **call
        ) as h:
            image = pipe(
                prompt="a red cat",
                generator=torch.Generator().manual_seed(seed),
                **call,
                output_type="np",
            ).images
    finally:
        pipe.scheduler = own
    return image, h


@pytest.mark.parametrize("levels", [["blocks", "out"], ["attention"]])
def test_reference_every_runs_the_references_on_every_nth_step_and_reuses_them(levels):
    refs = [character(n=2)]

    def run(steps, **kw):
        return ddim_panel(refs, steps, levels=levels, **kw)

    every1, h1 = run(5, reference_every=1)
    every2, h2 = run(5, reference_every=2)
    # steps 0, 2, 4 run the reference rows; 1 and 3 reuse 0's and 2's features
    assert h1.reference_rows_run == 5 * 2 and h2.reference_rows_run == 3 * 2
    assert (h2.cache_misses, h2.cache_hits) == (3, 2)
    assert not np.array_equal(every1, every2)
    # one step: the same computation
    assert np.array_equal(run(1, reference_every=1)[0], run(1, reference_every=2)[0])
    # with a shared cache, a later panel reuses them all (no reference rows)
    cache = FeatureCache(max_bytes=64 * 1024**2)
    first, _ = run(5, cache=cache, reference_every=2)
    _, later = run(5, cache=cache, seed=4, reference_every=2)
    assert np.array_equal(first, every2) and later.reference_rows_run == 0


@pytest.mark.parametrize("levels", [["blocks", "out"], ["attention"]])
def test_clean_references_run_once_per_panel(levels):
    refs = [character(n=2)]
    clean = dict(levels=levels, reference_noise="clean", reference_every=1)
    once, h = ddim_panel(refs, 5, **clean)
    # at t = 0 the reference rows are the same at every step: run at the first only
    assert h.reference_rows_run == 2 and (h.cache_misses, h.cache_hits) == (1, 4)
    # a cache too small to keep anything: the rows run at every step, same picture
    every, h5 = ddim_panel(refs, 5, cache=FeatureCache(max_bytes=1), **clean)
    assert h5.reference_rows_run == 5 * 2
    np.testing.assert_allclose(once, every, rtol=0, atol=1e-4)


def test_cached_character_moves_to_a_new_place_like_the_uncached_path():
    """A later panel reuses the character's prepared references and features, placed
    anew for its own box: at another position it equals the uncached panel."""
    pipe = pipe_for("tiny")
    s = settings()
    cache = FeatureCache()
    left, _ = generate(pipe, [character(position="left")], s, seed=1, cache=cache)
    right, handle = generate(pipe, [character(position="right")], s, seed=2, cache=cache)
    assert handle.reference_rows_run == 0  # everything came from the cache
    uncached_right, _ = generate(pipe, [character(position="right")], s, seed=2)
    np.testing.assert_allclose(right, uncached_right, rtol=0, atol=1e-4)
    assert np.abs(right - left).max() > 1e-3
    prepared = [k for k in cache._entries if k[0] == "prepared"]
    assert len(prepared) == 1  # masks, alignment, latents: once per character


def test_cache_keys_change_with_what_matters():
    pipe = pipe_for("tiny")
    cache = FeatureCache()

    def every_step(**kw):  # one cache look-up per step
        return settings(reference_every=1, **kw)

    generate(pipe, [character()], every_step(), cache=cache)
    _, h = generate(pipe, [character()], every_step(), cache=cache)
    assert h.cache_hits == STEPS
    _, h = generate(pipe, [character(color=(40, 200, 40))], every_step(), cache=cache)
    assert h.cache_misses == STEPS  # other images
    _, h = generate(pipe, [character()], every_step(reference_noise="clean"), cache=cache)
    assert h.cache_misses == 1  # clean references: the same features at every step
    _, h = generate(pipe, [character()], every_step(reference_seed=None), seed=5, cache=cache)
    assert h.cache_misses == STEPS  # the panel's seed is the reference seed now


def test_several_references_are_averaged():
    pipe = pipe_for("tiny")
    s = settings(reference_noise="clean")
    one = CharacterRefs("pip", [sheet((220, 40, 40))], None, "a pip")
    twice = CharacterRefs("pip", [sheet((220, 40, 40))] * 2, None, "a pip")
    other = CharacterRefs("pip", [sheet((40, 40, 220))], None, "a pip")
    both = CharacterRefs("pip", [sheet((220, 40, 40)), sheet((40, 40, 220))], None, "a pip")
    out_one, _ = generate(pipe, [one], s)
    out_twice, handle = generate(pipe, [twice], s)
    assert handle.reference_images == 2
    np.testing.assert_allclose(out_twice, out_one, atol=1e-5)  # mean of equal features
    out_other, _ = generate(pipe, [other], s)
    out_both, _ = generate(pipe, [both], s)
    assert np.abs(out_both - out_one).max() > 1e-4 and np.abs(out_both - out_other).max() > 1e-4


def test_reference_masks():
    plain = np.asarray(reference_mask(sheet((220, 40, 40))))
    assert plain[32, 32] == 1.0 and plain[1, 1] == 0.0 and 0.2 < plain.mean() < 0.6
    alpha = np.asarray(reference_mask(sheet((220, 40, 40), alpha=True)))
    assert alpha[32, 32] > 0.9 and alpha[1, 1] == 0.0
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    assert reference_mask(noise).min() == 1.0  # a busy border: the whole image
    # explicit masks are used as given
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle([0, 0, 31, 63], fill=255)
    refs = CharacterRefs("pip", [sheet((220, 40, 40))], [mask], "a pip")
    out, _ = generate(pipe_for("tiny"), [refs], settings())
    assert out.shape == (1, SIZE, SIZE, 3)
    with pytest.raises(ValueError):
        CharacterRefs("pip", [sheet((1, 2, 3))], [mask, mask], "a pip")
    with pytest.raises(ValueError):
        CharacterRefs("pip", [], None, "a pip")


def test_views_of_a_tilted_character_are_aligned():
    from comicgen.infusion.refs import align_views

    upright = sheet((220, 40, 40), shape="square")
    views = [upright, upright.rotate(10, fillcolor=(236, 236, 236)), upright.resize((48, 48))]
    views[2] = Image.new("RGB", (64, 64), (236, 236, 236))
    views[2].paste(upright.resize((48, 48)), (4, 12))
    masks = np.stack([np.asarray(reference_mask(v)) for v in views])
    frames = align_views(masks)
    assert frames[0][4] == 0.0
    assert abs(abs(frames[1][4]) - 10.0) <= 2.5  # the tilt is found (PIL turns y-up)
    assert abs(frames[2][2] / frames[0][2] - 0.75) < 0.08  # the smaller copy: scale 3/4
    assert abs(frames[2][4]) <= 2.5


def test_feature_cache_caps_and_evicts():
    cache = FeatureCache(max_bytes=3 * 400)
    for i in range(5):
        cache.put(("k", i), torch.zeros(100))  # 400 bytes each
    assert len(cache) == 3 and cache.nbytes == 1200 and cache.stats.evicted == 2
    assert cache.get(("k", 0)) is None and cache.get(("k", 4)) is not None
    cache.put(("big",), torch.zeros(1000))  # larger than the cap: not kept
    assert ("big",) not in cache


def test_settings_bounds():
    with pytest.raises(ValueError):
        InfusionSettings(weight=-1)
    with pytest.raises(ValueError):
        InfusionSettings(mode="everywhere")
    with pytest.raises(ValueError):
        InfusionSettings(layers={"up": [5.0]})
    with pytest.raises(ValueError):
        InfusionSettings(strenght=1.0)


def test_saved_tiny_pipeline_loads_with_from_pretrained(tmp_path):
    from diffusers import DiffusionPipeline

    save_tiny_pipeline(tmp_path / "tiny", "tiny")
    loaded = DiffusionPipeline.from_pretrained(tmp_path / "tiny")
    loaded.set_progress_bar_config(disable=True)
    a, _ = generate(loaded, [character()], settings())
    b, _ = generate(pipe_for("tiny"), [character()], settings())
    np.testing.assert_allclose(a, b, atol=1e-6)
