"""Fine-tune the bundled model's VAE decoder: ``python -m toyworld.finetune_decoder``.

Only the decoder (and ``post_quant_conv``) learns; the encoder is frozen, so the latents -
and with them the U-Net trained on them and the VAE's ``scaling_factor`` - stay exactly as
they were.  Full 64x64 images (the VAE phase of ``train`` used 32x32 crops), L1 + MSE +
edge loss, cosine learning rate over ``--minutes``.  The reconstruction PSNR on fresh
renders (as ``evaluate`` measures it) is printed before and after, and the new decoder is
written into the pipeline folder only if it is better.

Example::

    python -m toyworld.finetune_decoder --minutes 10 --data 12000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from toyworld.evaluate import DEFAULT_MODEL


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m toyworld.finetune_decoder", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="pipeline folder")
    ap.add_argument("--minutes", type=float, default=10.0, help="training time")
    ap.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    ap.add_argument("--data", type=int, default=12000, help="rendered training images")
    ap.add_argument("--seed", type=int, default=0, help="data set seed (train's data)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--workers", type=int, default=max(1, min(16, os.cpu_count() or 1)))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--eval-samples", type=int, default=256, help="fresh renders for the PSNR")
    return ap.parse_args(argv)


def _saved_dtype(folder: Path):
    """The dtype the weights are stored in (the bundled VAE is float16 on disk)."""
    from safetensors import safe_open

    path = next(Path(folder).glob("*.safetensors"))
    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(next(iter(f.keys()))).dtype


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from toyworld.train import lr_at, psnr, reconstruction_loss, render_data

    images_np = render_data(args.seed, args.data, args.workers, variants=1)["square"][0]

    import torch
    from diffusers import AutoencoderKL

    from toyworld.trainkit import vae_psnr

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    folder = Path(args.model)
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32).to(device)
    saved_dtype = _saved_dtype(folder / "vae")

    vae.eval()
    before = vae_psnr(vae, n=args.eval_samples)
    print(f"decoder: psnr before {before:.2f} dB on {args.eval_samples} fresh renders", flush=True)

    vae.requires_grad_(False)
    trainable = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    images = torch.from_numpy(images_np).permute(0, 3, 1, 2).contiguous()
    gen = torch.Generator().manual_seed(args.seed * 1000 + 7)
    t0, step = time.time(), 0
    vae.decoder.train()
    budget = args.minutes * 60
    while True:
        prog = (time.time() - t0) / max(1e-6, budget)
        if args.steps:
            prog = max(prog, step / args.steps)
        if prog >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(prog, args.lr)
        idx = torch.randint(0, images.shape[0], (args.batch,), generator=gen)
        x = (images[idx].float() / 127.5 - 1.0).to(device)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample()
        rec = vae.decode(z).sample.float()
        loss, _, _ = reconstruction_loss(rec, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            print(
                f"decoder step {step:5d}  {100 * prog:5.1f}%  loss {float(loss.detach()):.4f}  "
                f"psnr {psnr(rec.detach(), x):.2f} dB",
                flush=True,
            )
    vae.eval()
    vae.requires_grad_(False)
    after = vae_psnr(vae, n=args.eval_samples)
    print(
        f"decoder: {step} steps in {(time.time() - t0) / 60:.1f} min; "
        f"psnr {before:.2f} -> {after:.2f} dB",
        flush=True,
    )
    if after <= before:
        print("decoder: not better; the pipeline folder is unchanged", flush=True)
        return
    tmp = Path(tempfile.mkdtemp(prefix=".vae-", dir=folder))
    try:
        vae.to("cpu", saved_dtype).save_pretrained(tmp / "vae", safe_serialization=True)
        config = tmp / "vae" / "config.json"  # not where it was loaded from: a local path
        config.write_text(
            json.dumps(
                {k: v for k, v in json.loads(config.read_text()).items() if k != "_name_or_path"},
                indent=2,
                sort_keys=True,
            )
            + "\n",
            encoding="utf-8",
        )
        old = folder / ".vae.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder / "vae", old)
        os.replace(tmp / "vae", folder / "vae")
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"decoder: wrote {folder / 'vae'} (psnr {after:.2f} dB)", flush=True)


if __name__ == "__main__":
    main()
