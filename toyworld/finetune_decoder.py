"""Fine-tune the bundled model's VAE decoder: ``python -m toyworld.finetune_decoder``.

Only the decoder (and ``post_quant_conv``) learns; the encoder is frozen, so the latents -
and with them the U-Net trained on them and the VAE's ``scaling_factor`` - stay exactly as
they were.  Full 64x64 images (the VAE phase of ``train`` used 32x32 crops), L1 + MSE +
edge loss (``--face-weight``: more weight on the faces' pixels), cosine learning rate over
``--minutes``.  The reconstruction PSNR on fresh renders (as ``evaluate`` measures it) and
how often the faces' expression and facing survive the round trip are printed before and
after; the new decoder is written into the pipeline folder only if it is better
(:func:`better`).

Example::

    python -m toyworld.finetune_decoder --minutes 10 --data 12000
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from toyworld import model as M
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
    ap.add_argument(
        "--face-weight",
        type=float,
        default=0.0,
        help="extra loss weight on the pixels of the faces' latent cells (expressions are a "
        "few pixels; 0: plain loss)",
    )
    ap.add_argument("--eval-samples", type=int, default=256, help="fresh renders for the PSNR")
    return ap.parse_args(argv)


def _saved_dtype(folder: Path):
    """The dtype the weights are stored in (the bundled VAE is float16 on disk)."""
    from safetensors import safe_open

    path = next(Path(folder).glob("*.safetensors"))
    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(next(iter(f.keys()))).dtype


def face_round_trip(vae, n: int = 256, seed: int = 999) -> dict[str, float]:
    """How often the attribute reader still reads each character's expression and facing
    after the VAE's round trip (encode, decode) of ``n`` fresh scenes (data set ``seed``,
    as ``vae_psnr``): the ceiling the U-Net's faces can reach."""
    import numpy as np
    from PIL import Image

    from toyworld import reader as R
    from toyworld import world as W
    from toyworld.trainkit import round_trip

    scenes = [W.sample_scene(W.scene_rng(seed, i), sheet_fraction=0.0) for i in range(n)]
    pixels = np.stack([np.asarray(W.render(s)) for s in scenes])
    recs = round_trip(vae, pixels.transpose(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    hits: dict[str, list[bool]] = {"expression": [], "facing": []}
    for scene, img in zip(scenes, recs, strict=True):
        got = R.read(Image.fromarray(img))
        for _, _, ok in R.character_matches(got, R.truth(scene), tuple(hits)):
            for a in hits:
                hits[a].append(ok[a])
    return {a: float(np.mean(v)) for a, v in hits.items()}


def better(before: float, after: float, faces_before: dict, faces_after: dict) -> bool:
    """The new decoder is kept when its faces read back no worse and either its PSNR is
    higher or its expressions read back better at a PSNR no more than 0.05 dB lower."""
    e0, e1 = faces_before["expression"], faces_after["expression"]
    if faces_after["facing"] < faces_before["facing"] - 0.01 or e1 < e0 - 0.01:
        return False
    return after > before or (e1 > e0 + 0.01 and after >= before - 0.05)


def _faces(acc: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in acc.items())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from toyworld.train import lr_at, psnr, reconstruction_loss, render_data

    face = args.face_weight > 0
    images_np, _, masks_np = render_data(
        args.seed, args.data, args.workers, variants=1, face_masks=face
    )["square"]

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
    faces_before = face_round_trip(vae, n=args.eval_samples)
    print(
        f"decoder: psnr before {before:.2f} dB on {args.eval_samples} fresh renders; "
        f"faces read back after the round trip: {_faces(faces_before)}",
        flush=True,
    )

    vae.requires_grad_(False)
    trainable = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    images = torch.from_numpy(images_np).permute(0, 3, 1, 2).contiguous()
    weights = None
    if face:  # 1 + face_weight on the pixels of every face cell
        cells = torch.from_numpy((masks_np & M.FACE) > 0).float()[:, None]
        cell = images.shape[-1] // cells.shape[-1]
        weights = 1.0 + args.face_weight * cells.repeat_interleave(cell, 2).repeat_interleave(
            cell, 3
        )
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
        w = weights[idx].to(device) if weights is not None else None
        loss, _, _ = reconstruction_loss(rec, x, w)
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
    faces_after = face_round_trip(vae, n=args.eval_samples)
    print(
        f"decoder: {step} steps in {(time.time() - t0) / 60:.1f} min; "
        f"psnr {before:.2f} -> {after:.2f} dB; faces read back {_faces(faces_after)}",
        flush=True,
    )
    if not better(before, after, faces_before, faces_after):
        print("decoder: not better; the pipeline folder is unchanged", flush=True)
        return
    from toyworld.trainkit import replacing_folder, save_portable

    with replacing_folder(folder / "vae") as tmp:
        save_portable(vae.to("cpu", saved_dtype), tmp)
    print(f"decoder: wrote {folder / 'vae'} (psnr {after:.2f} dB)", flush=True)


if __name__ == "__main__":
    main()
