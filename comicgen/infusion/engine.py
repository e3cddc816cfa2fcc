"""The Infuser: reference rows beside the panel in every U-Net call, features added per block.

How it attaches (nothing else in the pipeline is touched):

- a forward **pre-hook** on the U-Net appends one batch row per reference image (its VAE
  latent, noised to the current timestep with a fixed per-reference noise, conditioned
  on the character's description) to ``sample``, ``timestep``, ``encoder_hidden_states``
  and every other per-row input (SDXL's ``added_cond_kwargs`` included);
- a forward **hook** on each chosen block (down blocks, mid block, up blocks) reads the
  reference rows' output, turns it into one feature map per character (masked to the
  character, cropped, averaged over the character's images), places it where the
  character stands in the panel and adds it to the panel rows;
- a forward **hook** on the U-Net strips the reference rows from its output.

All handles are removed when the ``infused`` block ends, whatever the reason (exception,
Ctrl-C). With a :class:`FeatureCache`, features already computed for a (character, step,
block) are reused and the reference rows are not run again.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from comicgen.infusion.attention import (
    ContextMemo,
    InfusionAttnProcessor,
    attention_weights,
)
from comicgen.infusion.cache import FeatureCache
from comicgen.infusion.features import (
    block_weights,
    canonical,
    combine,
    mean_canonical,
    placed,
    seed_delta,
    union_box,
)
from comicgen.infusion.prepare import Character, prepare_characters
from comicgen.infusion.refs import CharacterRefs
from comicgen.infusion.rows import (
    CLEAN_STEP,
    alpha_bar,
    from_x0,
    pad_other_inputs,
    reference_rows,
    reuses_features,
    source_step,
    strength_at,
    to_x0,
)

if TYPE_CHECKING:
    import torch

    from comicgen.settings import InfusionSettings


@dataclass
class InfusionHandle:
    """What an ``infused`` block did (read it after the pipeline call)."""

    blocks: list[str] = field(default_factory=list)  # hooked blocks, e.g. "down.0", "mid"
    characters: list[str] = field(default_factory=list)
    reference_images: int = 0
    unet_calls: int = 0  # U-Net calls seen
    infused_calls: int = 0  # of those, calls where features were added
    reference_rows_run: int = 0  # reference rows appended, summed over calls
    cache_hits: int = 0  # (character, step) feature sets taken from the cache
    cache_misses: int = 0  # (character, step) feature sets computed
    active: bool = False  # hooks were attached


@dataclass
class _Call:
    batch: int  # panel rows
    step: int
    step_key: tuple
    t: float
    sample: torch.Tensor  # the U-Net's input rows (panel, then reference rows)
    scale: float  # s(t)
    rows: dict[int, slice]  # character index -> reference rows in the batch
    # the panel rows that are infused (cfg: cond -> the conditional half)
    infused_rows: slice = field(default_factory=lambda: slice(0))


@contextmanager
def infused(
    pipe, refs: list[CharacterRefs], settings: InfusionSettings, **call
) -> Iterator[InfusionHandle]:
    """Infuse ``refs`` into every call of ``pipe`` made inside the ``with`` block.

    ``call`` are :class:`Infuser`'s keyword arguments (``height``, ``width``,
    ``num_inference_steps``, ``guidance_scale``, ``seed``, ``cache``): pass the same
    size, steps and guidance to the pipeline call. With ``settings.weight == 0``, no
    characters or only characters of strength 0, nothing is attached and the pipeline
    runs exactly as without.
    """
    unknown = sorted(set(call) - set(_CALL.parameters))
    if unknown:
        raise TypeError(f"infused() got unexpected keyword arguments: {', '.join(unknown)}")
    _CALL.bind(None, pipe, refs, settings, **call)  # Infuser's arguments, checked even when idle
    refs = [r for r in refs if r.strength > 0]
    handle = InfusionHandle(characters=[r.name for r in refs])
    if settings.weight == 0 or not refs:
        yield handle
        return
    infuser = Infuser(pipe, refs, settings, handle=handle, **call)
    if not infuser.blocks:
        yield handle
        return
    infuser.attach()
    try:
        yield handle
    finally:
        infuser.detach()


class Infuser:
    """Attaches infusion hooks to a pipeline's U-Net; see :func:`infused`."""

    def __init__(
        self,
        pipe,
        refs: list[CharacterRefs],
        settings: InfusionSettings,
        *,
        height: int,
        width: int,
        num_inference_steps: int,
        guidance_scale: float,
        seed: int,
        cache: FeatureCache | None = None,
        handle: InfusionHandle | None = None,
    ):
        self.pipe = pipe
        self.unet = pipe.unet
        self.settings = settings
        self.height, self.width = height, width
        self.steps = num_inference_steps
        self.seed = seed
        if cache is None and reuses_features(settings):
            # features computed at one step are reused by the next ones: keep them
            cache = FeatureCache(max_bytes=max(1, settings.cache_mb) * 1024**2)
        self.cache = cache
        self.handle = handle or InfusionHandle(characters=[r.name for r in refs])
        self.cfg = guidance_scale > 1.0 and self.unet.config.get("time_cond_proj_dim") is None
        weights = block_weights(self.unet, settings)
        self.weights = {k: v for k, v in weights.items() if v != 0.0}
        self.blocks = list(self.weights)
        self.attention = attention_weights(self.unet, settings)
        if self.attention:
            self.blocks.append("attention")
        self.handle.blocks = list(self.blocks)
        self._handles: list = []
        self._processors: dict | None = None  # the U-Net's own, while ours are set
        self._call: _Call | None = None
        self._contexts = ContextMemo()
        self._execution_device = None
        self.characters: list[Character] = []
        if self.blocks:
            self._prepare(refs)

    # --- preparation -----------------------------------------------------------------
    def _device(self):
        # diffusers' _execution_device walks every module (~8 ms on the bundled model):
        # ask once per panel
        if self._execution_device is None:
            self._execution_device = (
                getattr(self.pipe, "_execution_device", None) or self.unet.device
            )
        return self._execution_device

    def _prepare(self, refs: list[CharacterRefs]) -> None:
        self.characters = prepare_characters(
            self.pipe,
            refs,
            self.settings,
            height=self.height,
            width=self.width,
            steps=self.steps,
            seed=self.seed,
            cache=self.cache,
            device=self._device(),
        )
        self.handle.reference_images = sum(len(c.refs.images) for c in self.characters)

    # --- hooks -----------------------------------------------------------------------
    def attach(self) -> None:
        if self._handles:
            raise RuntimeError("infusion hooks are already attached")
        import torch

        # a compiled U-Net (model.compile) runs the hooks eagerly: they index Python
        # state per step, which torch.compile would only guard on and recompile
        eager = torch.compiler.disable
        try:
            self._handles.append(
                self.unet.register_forward_pre_hook(eager(self._pre_hook), with_kwargs=True)
            )
            for name in self.blocks:
                if name in ("out", "attention"):  # _post_hook; the attention processors
                    continue
                module = self._module(name)
                self._handles.append(module.register_forward_hook(eager(self._block_hook(name))))
            self._handles.append(self.unet.register_forward_hook(eager(self._post_hook)))
            if self.attention:
                own = self.unet.attn_processors
                ours = {
                    name: InfusionAttnProcessor(self, name, self.attention[name], proc)
                    if name in self.attention
                    else proc
                    for name, proc in own.items()
                }
                self._processors = own
                self.unet.set_attn_processor(ours)
        except BaseException:
            self.detach()
            raise
        self.handle.active = True

    def detach(self) -> None:
        while self._handles:
            self._handles.pop().remove()
        if self._processors is not None:
            self.unet.set_attn_processor(self._processors)
            self._processors = None
        self._call = None
        self.handle.active = False

    def _module(self, name: str):
        if name == "mid":
            return self.unet.mid_block
        kind, index = name.split(".")
        return (self.unet.down_blocks if kind == "down" else self.unet.up_blocks)[int(index)]

    def _step_of(self, timestep) -> tuple[int, float]:
        import torch

        t = float(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
        timesteps = getattr(self.pipe.scheduler, "timesteps", None)
        index = self.handle.unet_calls
        if timesteps is not None and len(timesteps):
            match = (timesteps.float().cpu() - t).abs() < 1e-3
            if match.any():
                index = int(match.nonzero()[0, 0])
        return min(index, max(self.steps - 1, 0)), t

    def _alpha_bar(self, t: float) -> float:
        return alpha_bar(self.pipe.scheduler, t)

    def _pre_hook(self, module, args, kwargs):

        self.handle.unet_calls += 1
        args = list(args)
        names = ["sample", "timestep", "encoder_hidden_states"]
        values = {}
        for i, name in enumerate(names):
            values[name] = args[i] if i < len(args) else kwargs.get(name)
        sample, timestep = values["sample"], values["timestep"]
        batch = sample.shape[0]
        step, t = self._step_of(timestep)
        scale = strength_at(self.settings, step, self.steps)
        if scale == 0.0:
            self._call = None
            return None
        self.handle.infused_calls += 1
        step_key = source_step(self.settings, self.pipe.scheduler, step, t)
        reuse = step_key[0] != step and step_key != CLEAN_STEP
        if reuse and not all(self._cached(ch, step_key) for ch in self.characters):
            step_key = (step, round(t, 3))  # nothing to reuse (evicted): run them now
        call = _Call(
            batch=batch,
            step=step,
            step_key=step_key,
            t=t,
            sample=sample,
            scale=scale,
            rows={},
            infused_rows=(
                slice(batch // 2, batch)
                if (self.cfg and self.settings.cfg == "cond")
                else slice(0, batch)
            ),
        )
        self._call = call
        # which characters need their reference rows run at this step
        needed = []
        for ci, ch in enumerate(self.characters):
            if self._cached(ch, call.step_key):
                self.handle.cache_hits += 1
            else:
                if self.cache is not None:
                    self.handle.cache_misses += 1
                needed.append(ci)
        if not needed:
            return None
        if self.settings.reference_noise == "matched":
            a, ref_t = self._alpha_bar(t), t
        else:
            a, ref_t = 1.0, 0.0
        chars = [self.characters[ci] for ci in needed]
        new, spans, pooled = reference_rows(chars, values, batch, a, ref_t)
        for ci, span in zip(needed, spans, strict=True):
            call.rows[ci] = span
        extra = new["sample"].shape[0] - batch
        self.handle.reference_rows_run += extra
        call.sample = new["sample"]
        for i, name in enumerate(names):
            if i < len(args):
                args[i] = new[name]
            else:
                kwargs[name] = new[name]
        # every other per-row input: repeat the last (conditional) row; residuals: zeros
        pad_other_inputs(kwargs, tuple(names), batch, extra, pooled)
        return tuple(args), kwargs

    def _cached(self, ch: Character, step_key: tuple) -> bool:
        """Every feature of ``ch`` at ``step_key`` is in the cache."""
        return self.cache is not None and all(
            self.cache.peek(ch.key + (step_key, name)) for name in self._feature_names()
        )

    def _post_hook(self, module, args, output):
        call = self._call
        self._call = None
        if call is None:
            return None
        sample = output[0] if isinstance(output, tuple) else output.sample
        if "out" in self.weights:
            weight = self.weights["out"] * self.settings.weight * call.scale
            sample = self._infuse_output(sample, call, weight)
        elif call.rows:
            sample = sample[: call.batch]
        else:
            return None
        if isinstance(output, tuple):
            return (sample,) + tuple(output[1:])
        output.sample = sample
        return output

    def _infuse_output(self, out, call: _Call, weight: float):
        """Blend the panel's denoised estimate (x0) toward the references', where they stand.

        The U-Net's output is a noise (or v) prediction; blending it directly would move
        the panel toward the references' *noise*. Converted to the denoised latent it
        predicts, the reference's estimate is its picture at this step (blurry early,
        sharp late): that is blended in, and the result is converted back.
        """
        import torch

        batch = call.batch
        a = self._alpha_bar(call.t)
        if a >= 1.0 - 1e-6:
            return out[:batch]
        kind = self.pipe.scheduler.config.get("prediction_type", "epsilon")
        x, o = call.sample.float(), out.float()
        # per row: the reference rows of 'clean' references were run at t = 0
        rows_a = torch.full((x.shape[0], 1, 1, 1), a, device=x.device)
        if self.settings.reference_noise == "clean":
            rows_a[batch:] = self._alpha_bar(0.0)
        x0 = to_x0(kind, x, o, rows_a)
        new_x0 = self._infuse("out", x0, call, weight)[:batch]
        return from_x0(kind, x[:batch], new_x0, a).to(out.dtype)

    def _feature_names(self) -> list[str]:
        names = [f"attn:{name}" for name in self.attention]
        for name in self.blocks:
            if name == "attention":
                continue
            names.append(name)
            if self.settings.skips and name.startswith("down."):
                module = self._module(name)
                count = len(module.resnets) + (1 if getattr(module, "downsamplers", None) else 0)
                names += [f"{name}.skip{i}" for i in range(count - 1)]
        return names

    def _block_hook(self, name: str):
        def hook(module, args, output):
            call = self._call
            if call is None:
                return None
            weight = self.weights[name] * self.settings.weight * call.scale
            if isinstance(output, tuple):
                hidden, skips = output[0], output[1]
                new_hidden = self._infuse(name, hidden, call, weight)
                if self.settings.skips:
                    new_skips = tuple(
                        self._infuse(f"{name}.skip{i}", h, call, weight)
                        for i, h in enumerate(skips[:-1])
                    ) + (new_hidden,)
                else:
                    new_skips = skips
                return (new_hidden, new_skips) + tuple(output[2:])
            return self._infuse(name, output, call, weight)

        return hook

    # --- attention ---------------------------------------------------------------------
    def attention_context(self, layer: str, key, value, call: _Call, grid: tuple[int, int]):
        """The ``AttentionContext`` (reference keys, values, the queries inside the boxes,
        their bias) of every character at attention ``layer``, or None; built once per
        layer and step key (:class:`ContextMemo`)."""
        return self._contexts.get(self.characters, self.cache, layer, key, value, call, grid)

    # --- features --------------------------------------------------------------------
    def _character_features(self, ci: int, name: str, hidden, call: _Call) -> tuple:
        """(canonical features [C,h,w], canonical mask [1,h,w]) of character ``ci``."""
        ch = self.characters[ci]
        key = ch.key + (call.step_key, name)
        if ci in call.rows:
            value = canonical(
                ch,
                hidden[call.rows[ci]],
                seed_mode=self.settings.mode == "seed",
                width=self.width,
                height=self.height,
            )
            if self.cache is not None:
                self.cache.put(key, value)
            return value
        value = self.cache.get(key) if self.cache is not None else None
        if value is None:  # pragma: no cover - the pre-hook checked
            raise RuntimeError(f"infusion: features of {ch.refs.name!r} at {name} not cached")
        return value

    def _place(self, canon, cmask, box, aspect: float, h: int, w: int):
        return placed(
            canon,
            cmask,
            box,
            aspect,
            h,
            w,
            width=self.width,
            height=self.height,
            feather=self.settings.feather,
        )

    def _placed_features(self, ci: int, name: str, hidden, call: _Call, h: int, w: int):
        """Character ``ci``'s features placed into its box; with a cache, kept per (step,
        block, box) as well, so that later panels with the character at the same place
        skip the resampling (the same numbers as placing the cached canonical map)."""
        ch = self.characters[ci]
        key = ch.key + (call.step_key, name, "placed", tuple(ch.box), round(ch.aspect, 6), h, w)
        if self.cache is not None and ci not in call.rows:
            value = self.cache.get(key)
            if value is not None:
                return value
        canon, cmask = self._character_features(ci, name, hidden, call)
        value = self._place(canon, cmask, ch.box, ch.aspect, h, w)
        if self.cache is not None:
            self.cache.put(key, value)
        return value

    def _infuse(self, name: str, hidden, call: _Call, weight: float):
        import torch

        batch = call.batch
        panel = hidden[:batch]
        _, c, h, w = panel.shape
        s = self.settings
        rows = call.infused_rows
        target = panel[rows].float()
        strengths = [ch.refs.strength for ch in self.characters]
        if s.mode == "regional":  # each character placed from its own cache entry
            placements = [
                self._placed_features(ci, name, hidden, call, h, w)
                for ci in range(len(self.characters))
            ]
            updated = combine(s.combine, target, placements, strengths, weight)
        else:
            feats = [
                self._character_features(ci, name, hidden, call)
                for ci in range(len(self.characters))
            ]
            if s.mode == "seed":
                updated = seed_delta(target, feats, strengths, weight)
            else:  # mean: one map over the union of the boxes
                canon, cmask = mean_canonical(feats, strengths)
                box = union_box([ch.box for ch in self.characters])
                aspect = sum(ch.aspect for ch in self.characters) / len(self.characters)
                placements = [self._place(canon, cmask, box, aspect, h, w)]
                amount = sum(strengths) / len(strengths)
                updated = combine(s.combine, target, placements, [amount], weight)
        new_panel = panel.clone()
        new_panel[rows] = updated.to(panel.dtype)
        if call.rows:
            return torch.cat([new_panel, hidden[batch:]])
        return new_panel


_CALL = inspect.signature(Infuser.__init__)  # the one signature of an infused call
