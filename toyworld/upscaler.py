"""Train the bundled x4 upscaler (``bundled:toyworld-x4``) on toy-world renders.

The network is Real-ESRGAN's compact SRVGG network (spandrel's ``Compact`` architecture),
small enough for a CPU: the saved state dict loads through ``spandrel``'s generic loader,
like any Real-ESRGAN compact model. Pairs are free: a scene rendered at 256 pixels is the
target, the same scene at 64 pixels (what the model paints) the input. The input side is
also degraded the way painted panels are: a round trip through the bundled model's VAE
(its softness and colour drift), slight blur and slight noise.

Train (one thread; the run is time-boxed and saves as it goes)::

    python -m toyworld.upscaler --minutes 25 --out comicgen/bundled/toyworld-x4

Measure the gain over Lanczos on fresh renders (seeds never used in training)::

    python -m toyworld.upscaler --evaluate --samples 64
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
from pathlib import Path

import numpy as np

from toyworld import world as W

TRAIN_SEED = 7100  # the data set seed of the training pairs (evaluation uses 4242)
WEIGHTS_NAME = "toyworld-x4.safetensors"
LR_SIZE, HR_SIZE, SCALE = 64, 256, 4

__all__ = ["build", "make_pairs", "psnr", "train", "upscale_gain_db"]


def build(num_feat: int = 32, num_conv: int = 10):
    """A fresh x4 SRVGGNetCompact (spandrel's class, so the state dict keys match)."""
    from spandrel.architectures.Compact import Compact

    return Compact(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_conv=num_conv, upscale=SCALE)


def make_pairs(seed: int, count: int, start: int = 0):
    """(HR uint8 N x 256 x 256 x 3, LR uint8 N x 64 x 64 x 3) of the data set ``seed``."""
    hr = np.empty((count, HR_SIZE, HR_SIZE, 3), dtype=np.uint8)
    lr = np.empty((count, LR_SIZE, LR_SIZE, 3), dtype=np.uint8)
    for i in range(count):
        scene = W.sample_scene(W.scene_rng(seed, start + i))
        hr[i] = np.asarray(W.render(scene, HR_SIZE))
        lr[i] = np.asarray(W.render(scene, LR_SIZE))
    return hr, lr


def vae_round_trip(lr: np.ndarray, vae_folder: Path, batch: int = 64) -> np.ndarray:
    """``lr`` encoded and decoded by the bundled model's VAE (what painted panels look like)."""
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(vae_folder)).eval()
    out = np.empty_like(lr)
    with torch.no_grad():
        for i in range(0, len(lr), batch):
            x = torch.from_numpy(lr[i : i + batch]).permute(0, 3, 1, 2).float() / 127.5 - 1
            y = vae.decode(vae.encode(x).latent_dist.sample()).sample
            y = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
            out[i : i + batch] = y.numpy()
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _degrade(x, rng: random.Random, p: float = 0.2):
    """Slight blur and/or noise (each with probability ``p``) on a batch of LR patches
    (N x 3 x h x w, 0..1)."""
    import torch
    import torch.nn.functional as F

    if rng.random() < p:
        sigma = rng.uniform(0.3, 0.9)
        r = torch.arange(-2, 3, dtype=torch.float32)
        k = torch.exp(-(r**2) / (2 * sigma**2))
        k = k / k.sum()
        k2 = (k[:, None] * k[None, :]).expand(3, 1, 5, 5)
        x = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k2, groups=3)
    if rng.random() < p:
        x = x + torch.randn_like(x) * rng.uniform(0.0, 0.025)
    return x.clamp(0, 1)


def save(model, out: Path) -> Path:
    """Write the state dict as safetensors (temp file + rename)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    target = out / WEIGHTS_NAME
    tmp = target.with_suffix(".tmp")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp))
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return target


def train(
    out: Path,
    minutes: float = 25.0,
    pairs: int = 2400,
    batch: int = 16,
    patch: int = 32,
    lr: float = 2e-3,
    num_feat: int = 32,
    num_conv: int = 10,
    vae_fraction: float = 0.2,
    degrade: float = 0.2,
    loss_kind: str = "mse",
    seed: int = 0,
    init: Path | None = None,
) -> None:
    import torch
    import torch.nn.functional as F

    from comicgen.bundled import TOYWORLD_DIR

    torch.manual_seed(seed)
    rng = random.Random(seed)
    t0 = time.time()
    hr, lr_clean = make_pairs(TRAIN_SEED, pairs)
    lr_vae = vae_round_trip(lr_clean, TOYWORLD_DIR / "vae")
    print(f"{pairs} pairs rendered, VAE round trip done in {time.time() - t0:.0f} s", flush=True)
    model = build(num_feat, num_conv)
    if init is not None:  # continue from saved weights (a fresh learning-rate schedule)
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(init)))
    else:  # start as the nearest-neighbour upscale the network adds its residual to
        torch.nn.init.zeros_(model.body[-1].weight)
        torch.nn.init.zeros_(model.body[-1].bias)
    loss_fn = F.mse_loss if loss_kind == "mse" else F.l1_loss
    n_params = sum(p.numel() for p in model.parameters())
    print(f"SRVGGNetCompact nf={num_feat} nc={num_conv}: {n_params} parameters", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    budget = minutes * 60.0
    start = time.time()
    step, last_save, running = 0, start, 0.0
    while True:
        elapsed = time.time() - start
        if elapsed >= budget:
            break
        frac = elapsed / budget
        for group in opt.param_groups:  # short warm-up, then cosine decay over the time budget
            group["lr"] = lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * frac))
        idx = [rng.randrange(pairs) for _ in range(batch)]
        xs, ys = [], []
        for i in idx:
            src = lr_vae if rng.random() < vae_fraction else lr_clean
            top, left = rng.randrange(LR_SIZE - patch + 1), rng.randrange(LR_SIZE - patch + 1)
            x = src[i, top : top + patch, left : left + patch]
            y = hr[i, top * SCALE : (top + patch) * SCALE, left * SCALE : (left + patch) * SCALE]
            if rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255.0
        y = torch.from_numpy(np.stack(ys)).permute(0, 3, 1, 2).float() / 255.0
        x = _degrade(x, rng, degrade)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 200 == 0:
            print(f"step {step} {elapsed / 60:.1f} min {loss_kind} {running:.5f}", flush=True)
        if time.time() - last_save > 180:
            save(model, out)
            last_save = time.time()
    path = save(model, out)
    print(f"trained {step} steps in {(time.time() - start) / 60:.1f} min -> {path}", flush=True)


def upscale_gain_db(
    samples: int = 64, seed: int = 4242, model: str = "bundled:toyworld-x4"
) -> float:
    """PSNR gain (dB) of the upscaler ``model`` over Lanczos, 64 -> 256 pixels, averaged
    over ``samples`` fresh renders of the data set ``seed`` (not a training seed)."""
    from PIL import Image

    from comicgen.upscale import load_upscaler

    upscaler = load_upscaler(model)
    if upscaler is None:
        return 0.0
    gains = []
    for i in range(samples):
        scene = W.sample_scene(W.scene_rng(seed, i))
        hr = np.asarray(W.render(scene, HR_SIZE))
        small = W.render(scene, LR_SIZE)
        lanczos = np.asarray(small.resize((HR_SIZE, HR_SIZE), Image.Resampling.LANCZOS))
        ours = upscaler.upscale(small)
        if ours.size != (HR_SIZE, HR_SIZE):
            ours = ours.resize((HR_SIZE, HR_SIZE), Image.Resampling.LANCZOS)
        gains.append(psnr(np.asarray(ours), hr) - psnr(lanczos, hr))
    return float(np.mean(gains))


BEFORE_AFTER_PROMPTS = (
    "a red round character with a hat on the left, close-up, night sky, grass, a tree",
    "a blue triangle character with stripes in the center, wide shot, day sky, snow, a house",
    "a green square character looking surprised on the right, close-up, sunset sky, sand",
    "a purple round character with dots on the left, wide shot, day sky, grass, a tree",
)


def before_after(out: Path, model: str = "bundled:toyworld-x4", seed: int = 0) -> Path:
    """Paint panels with the bundled model and write them side by side: Lanczos (left)
    and ``model`` (right), 256 pixels each, one row per panel."""
    import torch
    from PIL import Image

    from comicgen.upscale import load_upscaler
    from toyworld.evaluate import load_pipeline

    pipe = load_pipeline()  # the bundled model
    upscaler = load_upscaler(model)
    rows = len(BEFORE_AFTER_PROMPTS)
    canvas = Image.new("RGB", (2 * HR_SIZE, rows * HR_SIZE), "white")
    for i, prompt in enumerate(BEFORE_AFTER_PROMPTS):
        g = torch.Generator().manual_seed(seed + i)
        panel = pipe(
            prompt, height=LR_SIZE, width=LR_SIZE, num_inference_steps=20,
            guidance_scale=5.0, generator=g,
        ).images[0]  # fmt: skip
        lanczos = panel.resize((HR_SIZE, HR_SIZE), Image.Resampling.LANCZOS)
        canvas.paste(lanczos, (0, i * HR_SIZE))
        canvas.paste(upscaler.upscale(panel), (HR_SIZE, i * HR_SIZE))
    canvas.save(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=25.0, help="training time budget")
    parser.add_argument("--out", type=Path, default=Path("comicgen/bundled/toyworld-x4"))
    parser.add_argument("--pairs", type=int, default=2400, help="training pairs to render")
    parser.add_argument("--num-feat", type=int, default=32)
    parser.add_argument("--num-conv", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--init", type=Path, help="continue from these saved weights")
    parser.add_argument("--loss", choices=("mse", "l1"), default="mse")
    parser.add_argument(
        "--vae-fraction", type=float, default=0.2, help="inputs through the VAE round trip"
    )
    parser.add_argument(
        "--degrade", type=float, default=0.2, help="probability of input blur, and of noise"
    )
    parser.add_argument("--evaluate", action="store_true", help="only measure the gain")
    parser.add_argument("--model", default="bundled:toyworld-x4", help="upscaler to evaluate")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument(
        "--before-after", type=Path, help="only write painted panels, Lanczos | --model, here"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.before_after:
        print(before_after(args.before_after, args.model))
        return
    if not args.evaluate:
        train(
            args.out,
            args.minutes,
            args.pairs,
            lr=args.lr,
            vae_fraction=args.vae_fraction,
            degrade=args.degrade,
            loss_kind=args.loss,
            num_feat=args.num_feat,
            num_conv=args.num_conv,
            init=args.init,
        )
        model = str(args.out / WEIGHTS_NAME)
    else:
        model = args.model
    gain = upscale_gain_db(args.samples, model=model)
    print(f"upscale_gain_db={gain:.2f}")


if __name__ == "__main__":
    main()
