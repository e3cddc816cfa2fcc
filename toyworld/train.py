"""Train the bundled model on the toy world: ``python -m toyworld.train``.

Without training options it runs the recipe that made the shipped weights, stage by stage
(``toyworld.recipe``: ``--stages``, ``--device cuda``, ``--dry-run``); with them, one run:

Phases: render the data set (procedural, deterministic from ``--seed``; per aspect-ratio
bucket), train the VAE, encode the data set to latents (the VAE's ``scaling_factor`` is set
to 1/std of them), train the U-Net and the text encoder together (min-SNR weighting, EMA,
10% empty captions, shuffled and shortened captions, each batch from one bucket, the loss
weighted on the hats' and faces' latent cells), then export a StableDiffusionPipeline
folder.  ``--init FOLDER`` starts from a saved pipeline instead (its VAE, text encoder -
the token embedding grown for new words, old rows kept - and U-Net): the VAE phase is
skipped.

The run is bounded by ``--budget-minutes`` (wall clock, all phases; the VAE gets
``--vae-fraction`` of the training time) and, where given, by ``--vae-steps`` /
``--unet-steps``.  Learning rates follow the progress ``max(step/steps, time/budget)``, so
a run with explicit step counts that fits its budget is reproducible from the seed.
Checkpoints go to ``<out>/checkpoint.pt`` every ``--checkpoint-minutes`` and at the end of
each phase; running the same command again resumes from it.

Examples::

    python -m toyworld.train --device cpu --budget-minutes 110      # ~2 h, 2 cores
    python -m toyworld.train --device cuda --budget-minutes 8 --data 96000 \\
        --batch 512 --vae-batch 256 --workers 16                              # one H100
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from comicgen.bundled import TOYWORLD_DIR
from toyworld import model as M
from toyworld import recipe
from toyworld.export import export
from toyworld.face_contrast import FaceContrast
from toyworld.run import Run
from toyworld.trainkit import (
    bucket_batch,
    ema_update,
    encode_all,
    latent_scaling,
    lr_at,
    parse_buckets,
    progress_bar,
    psnr,
    reconstruction_loss,
    render_data,
    vae_psnr,
)

__all__ = ["lr_at", "main", "psnr", "reconstruction_loss", "render_data"]
DEFAULT_EXPORT = TOYWORLD_DIR
DEFAULT_BUCKETS = "square:0.4,wide:0.15,tall:0.15,strip-wide:0.15,strip-tall:0.15"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m toyworld.train", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--out", type=Path, default=Path(".train/toyworld"), help="work folder (checkpoints, logs)"
    )
    ap.add_argument(
        "--export", type=Path, default=DEFAULT_EXPORT, help="pipeline folder to write at the end"
    )
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--budget-minutes",
        type=float,
        default=110.0,
        help="hard wall-clock limit for the whole run",
    )
    ap.add_argument(
        "--vae-fraction", type=float, default=0.3, help="share of the training time for the VAE"
    )
    ap.add_argument(
        "--vae-steps",
        type=int,
        default=None,
        help="VAE steps (default: as many as the budget allows)",
    )
    ap.add_argument(
        "--unet-steps",
        type=int,
        default=None,
        help="U-Net steps (default: as many as the budget allows)",
    )
    ap.add_argument("--data", type=int, default=20000, help="number of rendered training images")
    ap.add_argument(
        "--sheet-fraction", type=float, default=0.15, help="share of model-sheet images"
    )
    ap.add_argument("--variants", type=int, default=8, help="training captions per image")
    ap.add_argument("--batch", type=int, default=64, help="U-Net batch size")
    ap.add_argument("--vae-batch", type=int, default=32)
    ap.add_argument(
        "--vae-crop",
        type=int,
        default=32,
        help="train the VAE on random crops of this size (0: whole images)",
    )
    ap.add_argument("--lr", type=float, default=6e-4, help="U-Net and text encoder learning rate")
    ap.add_argument("--vae-lr", type=float, default=5e-4)
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay of U-Net and text encoder")
    ap.add_argument("--min-snr-gamma", type=float, default=5.0)
    ap.add_argument(
        "--max-timestep",
        type=int,
        default=None,
        help="train the U-Net on timesteps below this one only (default: all); for a model "
        "that only ever runs image-to-image, e.g. the face pass at strength 0.55: 600",
    )
    ap.add_argument(
        "--hat-weight",
        type=float,
        default=0.0,
        help="extra loss weight on the latent cells that hold a hat (0: plain loss; "
        "hats are ~1%% of the picture and the weakest prompt binding)",
    )
    ap.add_argument(
        "--face-weight",
        type=float,
        default=0.0,
        help="extra loss weight on the latent cells that hold a face (eyes, brows, mouth: "
        "expression and facing)",
    )
    ap.add_argument(
        "--mouth-weight",
        type=float,
        default=0.0,
        help="extra loss weight on the latent cells of the mouth, on top of --face-weight "
        "(face crops only: the mouth's curve is most of the expression, and the face "
        "model's misreadings are mostly happy <-> sad)",
    )
    ap.add_argument(
        "--separate-words",
        type=lambda v: tuple(v.split(",")),
        default=None,
        metavar="WORD,WORD",
        help="with --init: move these two words' token embeddings apart before training "
        "(--separate-by); for words the text encoder barely tells apart, e.g. happy,sad "
        "in the face model (toyworld.probe shows how far apart they are)",
    )
    ap.add_argument(
        "--separate-by",
        type=float,
        default=6.0,
        help="--separate-words: each word moves this half-multiple of their difference "
        "(6: their distance grows 7 times)",
    )
    ap.add_argument(
        "--face-groups",
        type=int,
        default=1,
        help="render the data in runs of this many images of one scene whose characters' "
        "expression and facing differ, and train on whole runs with one noise and timestep "
        "(1: independent images; 4: every expression in each run)",
    )
    ap.add_argument(
        "--face-contrast",
        type=float,
        default=0.0,
        help="weight of the contrastive face loss (toyworld.face_contrast: the true "
        "caption must denoise the faces' cells better than the same caption with its "
        "expression or facing words turned; 0: off)",
    )
    ap.add_argument(
        "--contrast-images",
        type=int,
        default=8,
        help="images per batch in the contrastive face loss (those at the highest noise "
        "levels; each costs 5 more U-Net rows)",
    )
    ap.add_argument(
        "--contrast-temperature",
        type=float,
        default=8.0,
        help="the contrastive face loss's logits are minus the faces' summed squared "
        "error divided by this",
    )
    ap.add_argument(
        "--buckets",
        default="square:1",
        help=f"aspect-ratio buckets and their shares of the data, e.g. {DEFAULT_BUCKETS!r}; "
        "each batch is one bucket, --batch is the square bucket's batch (others: the same "
        "pixels per batch)",
    )
    ap.add_argument(
        "--close-up",
        type=float,
        default=None,
        help="share of close-up scenes in the data (default: half)",
    )
    ap.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this pipeline folder (VAE, text encoder, U-Net; the VAE phase is "
        "skipped) instead of from scratch",
    )
    ap.add_argument(
        "--workers", type=int, default=max(1, min(16, os.cpu_count() or 1)), help="render processes"
    )
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave default)")
    ap.add_argument("--checkpoint-minutes", type=float, default=5.0)
    ap.add_argument(
        "--reserve-minutes", type=float, default=0.5, help="kept for export and samples"
    )
    ap.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="autocast (auto: bf16 on CUDA)",
    )
    ap.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    ap.add_argument(
        "--extend-minutes",
        type=float,
        default=0.0,
        help="reopen a finished checkpoint's U-Net phase for this many more minutes "
        "(a new warm-up and cosine learning-rate cycle from the EMA weights)",
    )
    ap.add_argument(
        "--export-only", action="store_true", help="export from the checkpoint and stop"
    )
    args = ap.parse_args(argv)
    if args.separate_words is not None:
        if len(args.separate_words) != 2 or not args.init:
            ap.error("--separate-words takes two words, WORD,WORD, and an --init to move them in")
        from toyworld.trainkit import word_ids

        word_ids(args.separate_words)  # an unknown word stops the run before its data
    return args


# --- phases ----------------------------------------------------------------------------
def to_tensors(run: Run, data: dict) -> dict:
    """Per bucket: uint8 images N x 3 x H x W, caption ids, part masks (on the device)."""
    import torch

    out = {}
    for name, (images, ids, masks) in data.items():
        out[name] = (
            torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(run.device),
            torch.from_numpy(ids).to(run.device),
            torch.from_numpy(masks).to(run.device) if masks is not None else None,
        )
    return out


def vae_phase(run: Run, images) -> None:
    """Train the VAE on random crops of the square images; set the latents' scaling factor."""
    import torch

    args, state, vae = run.args, run.state, run.vae
    state.setdefault("vae_budget", max(0.0, run.time_left()) * args.vae_fraction)
    state.setdefault("vae_elapsed", 0.0)
    opt = torch.optim.AdamW(
        vae.parameters(), lr=args.vae_lr, weight_decay=0.0, betas=(0.9, 0.99), fused=run.cuda
    )
    if state.get("optim") and state.get("step", 0) > 0:
        opt.load_state_dict(state["optim"])
    run.restore_rng()
    gen = torch.Generator(device=run.device)
    gen.manual_seed(args.seed * 1000 + 1 + state["step"])
    step, n = state["step"], images.shape[0]
    phase_t0, vae_elapsed0 = time.time(), state["vae_elapsed"]
    last_ckpt = time.time()
    bar = progress_bar(100, "vae")
    vae.train()
    while True:
        state["vae_elapsed"] = vae_elapsed0 + time.time() - phase_t0
        prog = state["vae_elapsed"] / max(1e-6, state["vae_budget"])
        if args.vae_steps:
            prog = (
                max(prog, step / args.vae_steps)
                if state["vae_budget"] > 0
                else step / args.vae_steps
            )
        if prog >= 1.0 or run.time_left() < 0:
            break
        lr = lr_at(prog, args.vae_lr)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, n, (args.vae_batch,), device=run.device, generator=gen)
        x = images[idx].float() / 127.5 - 1.0
        if args.vae_crop and args.vae_crop < x.shape[-1]:  # fully convolutional: crops are cheaper
            c = args.vae_crop
            lim = (x.shape[-1] - c) // 4 + 1
            ox, oy = (
                int(v) * 4 for v in torch.randint(0, lim, (2,), generator=gen, device=run.device)
            )
            x = x[..., oy : oy + c, ox : ox + c]
        with run.autocast():
            post = vae.encode(x).latent_dist
            z = post.sample(generator=gen)
            rec = vae.decode(z).sample
        rec = rec.float()
        rec_loss, l1, l2 = reconstruction_loss(rec, x)
        loss = rec_loss + 1e-5 * post.kl().mean() / z[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            p, lv = psnr(rec.detach(), x), float(loss.detach())
            run.log.event(
                phase="vae",
                step=step,
                loss=lv,
                mse=float(l2.detach()),
                psnr=p,
                lr=lr,
                t=round(run.elapsed(), 1),
            )
            bar.n = min(100.0, 100 * prog)
            bar.set_postfix_str(f"step {step} loss {lv:.4f} psnr {p:.1f}dB")
            bar.refresh()
            run.log.line(
                f"vae step {step:6d}  {100 * prog:5.1f}%  loss {lv:.4f}  psnr {p:5.2f} dB  "
                f"lr {lr:.2e}  {run.elapsed() / 60:5.1f} min"
            )
        state["step"] = step
        if time.time() - last_ckpt > args.checkpoint_minutes * 60:
            run.save(optim=opt)
            last_ckpt = time.time()
    bar.close()
    state["vae_steps_done"] = step
    print(f"vae: {step} steps in {state['vae_elapsed'] / 60:.1f} min", flush=True)
    vae.eval()
    state["scaling_factor"] = latent_scaling(vae, images, run.autocast)
    state["phase"], state["step"], state["optim"] = "unet", 0, None
    state["vae_psnr_train"] = vae_psnr(vae, images[-512:])
    print(
        f"vae: scaling factor {state['scaling_factor']:.4f}, "
        f"psnr on last 512 training images {state['vae_psnr_train']:.2f} dB",
        flush=True,
    )
    run.save()


def latents_phase(run: Run, data: dict) -> dict:
    """Encode every bucket's images (cached beside the checkpoint: they depend on the data
    set and the finished VAE)."""
    import torch

    run.vae.eval()
    run.vae.requires_grad_(False)
    t, out = time.time(), {}
    a, state = run.args, run.state
    vae_id = state.get("vae_steps_done", 0) if "init" not in state else "init"
    for name, (images, ids, masks) in data.items():
        n = images.shape[0]
        g = f"-g{a.face_groups}" if a.face_groups > 1 else ""
        f = run.out / f"latents-{a.seed}-{name}-{n}-{a.sheet_fraction}-{a.close_up}-{vae_id}{g}.pt"
        if f.exists():
            mean, std = (x.to(run.device) for x in torch.load(f, map_location="cpu"))
        else:
            mean, std = encode_all(run.vae, images, run.autocast)
            torch.save((mean.cpu(), std.cpu()), f)
        out[name] = (mean, std, ids, masks)
    shapes = ", ".join(f"{k} {tuple(v[0].shape)}" for k, v in out.items())
    print(f"latents: {shapes} encoded in {time.time() - t:.1f}s", flush=True)
    return out


def part_weights(args, masks):
    """Per-cell loss weight 1 + hat_weight * hat + face_weight * face + mouth_weight *
    mouth (None: all 1)."""
    if masks is None:
        return None
    w = 1.0 + args.hat_weight * part_cells(masks, M.HAT)
    w = w + args.face_weight * part_cells(masks, M.FACE)
    return (w + args.mouth_weight * part_cells(masks, M.MOUTH)).unsqueeze(1)


def part_cells(masks, bit: int):
    """[N, h, w] float: 1 on the latent cells whose part mask holds ``bit`` (``M.HAT``,
    ``M.FACE`` or ``M.MOUTH``)."""
    return ((masks.long() & bit) > 0).float()


def unet_phase(run: Run, latents: dict) -> None:
    """Train the U-Net and the text encoder (EMA weights kept); each batch from one bucket,
    the bucket drawn by its share of the data."""
    import copy

    import torch

    args, state = run.args, run.state
    unet, text_encoder, device = run.unet, run.text_encoder, run.device
    sched = M.train_scheduler()
    ac = sched.alphas_cumprod.to(device)
    snr = ac / (1 - ac)
    v_pred = sched.config.prediction_type == "v_prediction"
    if v_pred:
        # min-SNR-style cap on the clean steps; the pure-noise steps (SNR 0, where the text
        # alone decides the picture) keep full weight
        weight = torch.clamp(snr + 1, max=args.min_snr_gamma) / (snr + 1)
    else:
        weight = torch.clamp(snr, max=args.min_snr_gamma) / snr
    state["prediction_type"] = sched.config.prediction_type
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    ema_unet.requires_grad_(False)
    ema_text.requires_grad_(False)
    if "ema_unet" in state.get("models", {}):
        ema_unet.load_state_dict(state["models"]["ema_unet"])
        ema_text.load_state_dict(state["models"]["ema_text"])
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(
        params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99), fused=run.cuda
    )
    if state.get("optim") and state.get("step", 0) > 0:
        opt.load_state_dict(state["optim"])
    run.restore_rng()
    state.setdefault("unet_budget", max(0.0, run.time_left()))
    state.setdefault("unet_elapsed", 0.0)
    state["buckets"] = {k: tuple(v[0].shape[-2:]) for k, v in latents.items()}
    names = list(latents)
    shares = torch.tensor([float(latents[k][0].shape[0]) for k in names])
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed * 1000 + 2 + state["step"])
    cpu_gen = torch.Generator().manual_seed(args.seed * 1000 + 3 + state["step"])
    step = state["step"]
    phase_t0, el0 = time.time(), state["unet_elapsed"]
    last_ckpt = time.time()
    bar = progress_bar(100, "unet")
    unet.train()
    text_encoder.train()
    ema_loss = None
    sf = state["scaling_factor"]
    contrast = FaceContrast(device, args.contrast_temperature) if args.face_contrast > 0 else None
    ema_ce = ema_acc = None

    def models_now() -> dict:
        return {
            "unet": unet.state_dict(),
            "text_encoder": text_encoder.state_dict(),
            "ema_unet": ema_unet.state_dict(),
            "ema_text": ema_text.state_dict(),
        }

    while True:
        state["unet_elapsed"] = el0 + time.time() - phase_t0
        prog = state["unet_elapsed"] / max(1e-6, state["unet_budget"])
        if args.unet_steps:
            prog = max(prog, step / args.unet_steps)
        if prog >= 1.0 or run.time_left() < 0:
            break
        lr = lr_at(prog, args.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        name = names[int(torch.multinomial(shares, 1, generator=cpu_gen))]
        lat_mean, lat_std, caption_ids, masks = latents[name]
        g = args.face_groups
        b = max(g, bucket_batch(name, args.batch) // g * g)
        # whole runs of ``g`` images (one scene, faces varied) share noise and timestep
        runs = torch.randint(0, lat_mean.shape[0] // g, (b // g,), device=device, generator=gen)
        idx = (runs[:, None] * g + torch.arange(g, device=device)).flatten()
        var = torch.randint(0, caption_ids.shape[1], (b,), device=device, generator=gen)
        ids = caption_ids[idx, var].long()
        mu = lat_mean[idx].float()
        lat = (mu + lat_std[idx].float() * torch.randn(mu.shape, device=device, generator=gen)) * sf
        shape = (b // g, *lat.shape[1:])
        noise = torch.randn(shape, device=device, generator=gen).repeat_interleave(g, 0)
        n_t = sched.config.num_train_timesteps
        top = min(n_t, args.max_timestep or n_t)
        ts = torch.randint(0, top, (b // g,), device=device, generator=gen).repeat_interleave(g)
        if contrast is not None:  # the noisiest images, each with its fullest caption
            sel = ts.argsort(descending=True)[: args.contrast_images]
            picked = contrast.pick_variants(caption_ids[idx[sel]].long(), var[sel])
            ids[sel] = caption_ids[idx[sel], picked].long()
        a = ac[ts].view(-1, 1, 1, 1)
        noisy = a.sqrt() * lat + (1 - a).sqrt() * noise
        with run.autocast():
            enc = text_encoder(ids)[0]
            pred = unet(noisy, ts, enc).sample
        target = a.sqrt() * noise - (1 - a).sqrt() * lat if v_pred else noise
        err = (pred.float() - target) ** 2
        per = err.mean(dim=(1, 2, 3))  # the plain MSE, logged
        cells = part_weights(args, masks[idx] if masks is not None else None)
        if cells is not None:
            # spatial weight on hat and face cells: their share of the gradient grows; the
            # rest of the picture keeps its plain loss
            err = err * cells
        loss = (err.mean(dim=(1, 2, 3)) * weight[ts]).mean()
        if contrast is not None:
            faces = part_cells(masks[idx[sel]], M.FACE).unsqueeze(1)
            ce, acc = contrast.loss(
                unet, text_encoder, noisy[sel], ts[sel], target[sel], pred[sel], ids[sel],
                faces, run.autocast,
            )  # fmt: skip
            if ce is not None:
                loss = loss + args.face_contrast * ce
                ce, acc = float(ce.detach()), float(acc)
                ema_ce = ce if ema_ce is None else 0.95 * ema_ce + 0.05 * ce
                ema_acc = acc if ema_acc is None else 0.95 * ema_acc + 0.05 * acc
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text, text_encoder, decay)
        if step % 10 == 0 or ema_loss is None:
            lv = float(per.detach().mean())
            ema_loss = lv if ema_loss is None else 0.9 * ema_loss + 0.1 * lv
        if step % 100 == 0:
            run.log.event(
                phase="unet",
                step=step,
                loss=float(loss.detach()),
                mse=ema_loss,
                lr=lr,
                t=round(run.elapsed(), 1),
                **({"face_ce": ema_ce, "face_acc": ema_acc} if ema_ce is not None else {}),
            )
            bar.n = min(100.0, 100 * prog)
            bar.set_postfix_str(f"step {step} mse {ema_loss:.4f}")
            bar.refresh()
            run.log.line(
                f"unet step {step:6d}  {100 * prog:5.1f}%  mse {ema_loss:.4f}  "
                f"lr {lr:.2e}  {run.elapsed() / 60:5.1f} min"
                + (f"  face ce {ema_ce:.3f} acc {ema_acc:.2f}" if ema_ce is not None else "")
            )
        state["step"] = step
        if time.time() - last_ckpt > args.checkpoint_minutes * 60:
            run.save(models_now(), opt)
            last_ckpt = time.time()
    bar.close()
    state["unet_steps_done"] = step
    state["unet_final_mse"] = ema_loss
    print(
        f"unet: {step} steps in {state['unet_elapsed'] / 60:.1f} min, final mse {ema_loss}",
        flush=True,
    )
    unet.load_state_dict(ema_unet.state_dict())
    text_encoder.load_state_dict(ema_text.state_dict())
    state["phase"], state["optim"] = "done", None
    run.save({"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict()})


# --- the whole run ---------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if recipe.is_recipe_call(argv):  # no training options: the shipped weights' recipe
        recipe.main(argv)
        return
    args = parse_args(argv)
    t_start = time.time()
    buckets = parse_buckets(args.buckets)
    # render first: worker processes are forked before torch starts any threads or CUDA
    data = None
    if not args.export_only:
        data = render_data(
            args.seed,
            args.data,
            args.workers,
            args.variants,
            args.sheet_fraction,
            buckets,
            hat_masks=args.hat_weight > 0,
            face_masks=args.face_weight > 0 or args.mouth_weight > 0 or args.face_contrast > 0,
            close_up=args.close_up,
            group=args.face_groups,
        )
    run = Run(args)
    if args.export_only or run.state["phase"] == "done":
        export(run.state, run.vae, run.text_encoder, run.unet, args, run.log)
        return
    tensors = to_tensors(run, data)
    if run.state["phase"] == "vae":
        vae_phase(
            run, tensors["square"][0] if "square" in tensors else next(iter(tensors.values()))[0]
        )
    latents = latents_phase(run, {k: v for k, v in tensors.items()})
    if run.state["phase"] == "unet":
        unet_phase(run, latents)
    export(run.state, run.vae, run.text_encoder, run.unet, args, run.log)
    print(
        f"total wall time {(time.time() - t_start) / 60:.1f} min "
        f"(budget {args.budget_minutes} min)",
        flush=True,
    )


if __name__ == "__main__":
    main()
