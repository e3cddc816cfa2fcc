"""Training helpers shared by ``train``, ``finetune_decoder`` and ``evaluate``: the data
renderer (process pool), progress lines, the learning-rate schedule, EMA, the VAE's losses
and its one PSNR measure."""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from toyworld import model as M
from toyworld import world as W

BUCKET_INDEX_STRIDE = 10_000_000  # scene indices of bucket i start at i * this
# the frame shapes, then the face pass's crops (64 x 64; toyworld.face_crops)
KNOWN_BUCKETS = (*W.BUCKETS, "face")


def parse_buckets(spec: str) -> dict[str, float]:
    """``"square:0.4,wide:0.15"`` -> {"square": 0.4, "wide": 0.15} (shares normalised)."""
    out: dict[str, float] = {}
    for part in spec.split(","):
        name, _, share = part.strip().partition(":")
        if name not in KNOWN_BUCKETS:
            known = ", ".join(KNOWN_BUCKETS)
            raise SystemExit(f"--buckets: unknown bucket {name!r} (known: {known})")
        out[name] = float(share or 1.0)
    total = sum(out.values())
    return {k: v / total for k, v in out.items()}


def bucket_batch(bucket: str, batch: int) -> int:
    """The batch size of ``bucket`` for a 64 x 64 batch of ``batch``: the same pixels per
    batch (so every step costs about the same)."""
    w, h = W.BUCKETS.get(bucket, (W.SIZE, W.SIZE))
    return max(1, round(batch * W.SIZE * W.SIZE / (w * h)))


def render_data(
    seed: int,
    count: int,
    workers: int,
    variants: int = 8,
    sheet_fraction: float = 0.15,
    buckets: dict[str, float] | None = None,
    hat_masks: bool = False,
    face_masks: bool = False,
    close_up: float | None = None,
    group: int = 1,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Images, caption ids and part masks of the training set, per bucket (``count`` images
    shared out by the buckets' shares; model sheets only in the square bucket)."""
    buckets = buckets or {"square": 1.0}
    jobs, owners = [], []
    for name, share in buckets.items():
        n = int(round(count * share)) // group * group
        base = KNOWN_BUCKETS.index(name) * BUCKET_INDEX_STRIDE
        sheets = sheet_fraction if name == "square" else 0.0
        for s in range(0, n, 500):
            args = (seed, base + s, min(500, n - s), variants, sheets, hat_masks, name, face_masks)
            jobs.append((*args, close_up, group))
            owners.append(name)
    t = time.time()
    w = max(1, workers)
    if w == 1:
        parts = [M.data_chunk(*j) for j in jobs]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=w, mp_context=ctx) as ex:
            parts = list(ex.map(M.data_chunk, *zip(*jobs, strict=False)))
    out = {}
    for name in buckets:
        mine = [p for p, o in zip(parts, owners, strict=False) if o == name]
        if not mine:
            continue
        masks = [p[2] for p in mine]
        out[name] = (
            np.concatenate([p[0] for p in mine]),
            np.concatenate([p[1] for p in mine]),
            np.concatenate(masks) if masks[0] is not None else None,
        )
    sizes = ", ".join(f"{k} {v[0].shape[0]}" for k, v in out.items())
    print(
        f"data: rendered {count} images ({sizes}) with {variants} captions each "
        f"in {time.time() - t:.1f}s ({w} workers)",
        flush=True,
    )
    return out


class Log:
    """Plain progress lines (for logs) plus a JSON-lines event log."""

    def __init__(self, path: Path):
        self.path = path
        self.last_print = 0.0

    def event(self, **kw) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(kw) + "\n")

    def line(self, text: str, force: bool = False, every: float = 20.0) -> None:
        now = time.time()
        if force or now - self.last_print >= every:
            self.last_print = now
            print(text, flush=True)


@contextmanager
def replacing_folder(dest: Path) -> Iterator[Path]:
    """A temporary folder beside ``dest`` to fill; when the block ends without an error it
    replaces ``dest`` whole (what an install writes into a model folder), and either way
    no temporary folder is left behind."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        tmp.replace(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_portable(model, folder: Path) -> None:
    """``model.save_pretrained(folder)`` (safetensors) without the ``_name_or_path`` that
    diffusers writes into its config: where it was loaded from, a path of the machine that
    trained it, not part of the weights."""
    model.save_pretrained(folder, safe_serialization=True)
    config = Path(folder) / "config.json"
    data = json.loads(config.read_text(encoding="utf-8"))
    data.pop("_name_or_path", None)
    config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def install_unet(unet: Path, dest: Path) -> Path:
    """The U-Net saved in folder ``unet`` written to ``dest`` in float16 (as the model's
    own U-Net ships), replacing it whole, without the training machine's path."""
    import torch
    from diffusers import UNet2DConditionModel

    trained = UNet2DConditionModel.from_pretrained(str(unet)).to(torch.float16)
    with replacing_folder(dest) as tmp:
        save_portable(trained, tmp)
    return dest


def average_weights(folders: list[Path], dest: Path) -> Path:
    """``dest`` = ``folders[0]`` (config and all) with each safetensors weight the mean of
    that weight in every folder: a "model soup" of phases of one run (same architecture,
    same names), replacing ``dest`` whole; ``dest`` may be one of ``folders``."""
    from safetensors.torch import load_file, save_file

    files = sorted(p.name for p in folders[0].glob("*.safetensors"))
    if not files:
        raise SystemExit(f"{folders[0]}: no safetensors weights to average")
    for folder in folders[1:]:
        if sorted(p.name for p in folder.glob("*.safetensors")) != files:
            raise SystemExit(f"{folder}: not the same weight files as {folders[0]}")
    averaged = {}
    for name in files:
        tensors = [load_file(str(folder / name)) for folder in folders]
        if any(t.keys() != tensors[0].keys() for t in tensors):
            raise SystemExit(f"{name}: the folders' weights differ in names; not one model")
        averaged[name] = {
            key: (sum(t[key].float() for t in tensors) / len(tensors)).to(value.dtype)
            for key, value in tensors[0].items()
        }
    dest.parent.mkdir(parents=True, exist_ok=True)
    with replacing_folder(dest) as tmp:
        for item in folders[0].iterdir():
            if item.suffix != ".safetensors" and item.is_file():
                shutil.copy2(item, tmp / item.name)
        for name, weights in averaged.items():
            save_file(weights, str(tmp / name), metadata={"format": "pt"})
    return dest


def word_ids(words) -> list[int]:
    """The token ids of whole ``words`` (each one token of the toy world's vocabulary)."""
    vocab = M.token_vocab()
    missing = [w for w in words if w + "</w>" not in vocab]
    if missing:
        raise SystemExit(f"--separate-words: {', '.join(missing)} not in the vocabulary")
    return [vocab[w + "</w>"] for w in words]


def separate_words(text_encoder, words: tuple[str, str], factor: float) -> float:
    """Move two words' token embeddings apart along their difference, each by ``factor``/2
    of it (their distance grows ``1 + factor`` times), and return the new distance.  For
    a model whose text encoder barely tells two words apart: the U-Net then has a signal
    to learn from (the face model's happy / sad: model card)."""
    import torch

    a, b = word_ids(words)
    emb = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        d = emb[b] - emb[a]
        emb[b] += factor / 2 * d
        emb[a] -= factor / 2 * d
        return float((emb[b] - emb[a]).norm())


def progress_bar(total: float, desc: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="%",
        disable=not sys.stderr.isatty(),
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}% [{elapsed}<{remaining}{postfix}]",
    )


def lr_at(progress: float, base: float, warmup: float = 0.03, floor: float = 0.05) -> float:
    if progress < warmup:
        return base * (0.1 + 0.9 * progress / warmup)
    p = (progress - warmup) / max(1e-8, 1 - warmup)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def ema_update(ema, model, decay: float) -> None:
    import torch

    with torch.no_grad():
        torch._foreach_lerp_(
            list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - decay
        )


def reconstruction_loss(rec, x, weight=None):
    """The VAE's image loss: L1 + MSE + 0.5 * L1 of the horizontal and vertical gradients
    (edges); ``weight`` (N x 1 x H x W, optional) weights each pixel's terms.  Returns
    (loss, l1, mse), l1 and mse unweighted."""
    w = 1.0 if weight is None else weight
    d = rec - x
    l1, l2 = d.abs(), d**2
    gx = ((rec[..., :, 1:] - rec[..., :, :-1]) - (x[..., :, 1:] - x[..., :, :-1])).abs()
    gy = ((rec[..., 1:, :] - rec[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])).abs()
    if weight is None:
        loss = l1.mean() + l2.mean() + 0.5 * (gx.mean() + gy.mean())
    else:
        loss = (
            (l1 * w).mean()
            + (l2 * w).mean()
            + 0.5 * ((gx * w[..., :, 1:]).mean() + (gy * w[..., 1:, :]).mean())
        )
    return loss, l1.mean(), l2.mean()


def psnr(a, b) -> float:
    """PSNR in dB of images in [-1, 1] (a training-time progress figure, not 8-bit)."""
    mse = float(((a.float() - b.float()) ** 2).mean()) / 4.0
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def round_trip(vae, images):
    """``images`` (uint8 N x 3 x H x W, tensor or array) encoded (posterior mode) and
    decoded by ``vae``, back as uint8 N x 3 x H x W on the CPU, in batches of 64."""
    import torch

    x = (images if torch.is_tensor(images) else torch.from_numpy(np.array(images))).float()
    x = x.cpu() / 127.5 - 1.0  # (np.array copies: a read-only array made a warning)
    param = next(vae.parameters())
    recs = []
    with torch.no_grad():
        for i in range(0, x.shape[0], 64):
            xb = x[i : i + 64].to(param.device, param.dtype)
            recs.append(vae.decode(vae.encode(xb).latent_dist.mode()).sample.float().cpu())
    return ((torch.cat(recs).clamp(-1, 1) + 1) * 127.5).round().byte()


def vae_psnr(vae, images=None, n: int = 256, seed: int = 999) -> float:
    """The VAE's reconstruction PSNR (dB, on 8-bit images): of ``images`` (uint8 tensor or
    array N x 3 x H x W) or else of ``n`` fresh renders (scenes and sheets, data set ``seed``)
    - the one measure the model card, ``train`` and ``evaluate`` report."""
    import torch

    if images is None:
        imgs = np.stack(
            [np.asarray(W.render(W.sample_scene(W.scene_rng(seed, i)))) for i in range(n)]
        )
        images = torch.from_numpy(imgs).permute(0, 3, 1, 2)
    x = torch.as_tensor(images).float().cpu() / 127.5 - 1.0
    rec8 = round_trip(vae, images).float()
    mse = float(((rec8 - (x + 1) * 127.5) ** 2).mean())
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


def encode_all(vae, images, autocast, batch: int = 512):
    """Posterior means and standard deviations (float16) of uint8 images N x 3 x H x W."""
    import torch

    means, stds = [], []
    with torch.no_grad():
        for i in range(0, images.shape[0], batch):
            x = images[i : i + batch].float() / 127.5 - 1.0
            with autocast():
                d = vae.encode(x).latent_dist
            means.append(d.mean.float().half())
            stds.append(d.std.float().half())
    return torch.cat(means), torch.cat(stds)


def latent_scaling(vae, images, autocast) -> float:
    """1 / std of the latents of (up to 2048 of) ``images``: the VAE's ``scaling_factor``."""
    import torch

    with torch.no_grad(), autocast():
        x = images[: min(2048, images.shape[0])].float() / 127.5 - 1.0
        z = torch.cat(
            [vae.encode(x[i : i + 256]).latent_dist.mean.float() for i in range(0, x.shape[0], 256)]
        )
    return float(1.0 / z.std())
