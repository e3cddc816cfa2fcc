"""Train the bundled model on the toy world: ``python -m toyworld.train``.

Phases: render the data set (procedural, deterministic from ``--seed``), train the VAE,
encode the data set to latents (the VAE's ``scaling_factor`` is set to 1/std of them),
train the U-Net and the text encoder together (min-SNR weighting, EMA, 10% empty captions,
shuffled and shortened captions), then export a StableDiffusionPipeline folder.

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
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

from comicgen.bundled import TOYWORLD_DIR
from toyworld import model as M

DEFAULT_EXPORT = TOYWORLD_DIR


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
        "--hat-weight",
        type=float,
        default=0.0,
        help="extra loss weight on the latent cells that hold a hat (0: plain loss; "
        "hats are ~1%% of the picture and the weakest prompt binding)",
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
    return ap.parse_args(argv)


# --- helpers ---------------------------------------------------------------------------
class Log:
    """Plain progress lines (for logs) plus a tqdm bar when attached to a terminal."""

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


def render_data(args, hat_masks: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Images, caption ids and (with ``hat_masks``) hat masks of the training set."""
    n, w = args.data, max(1, args.workers)
    chunk = 500
    starts = list(range(0, n, chunk))
    jobs = [
        (args.seed, s, min(chunk, n - s), args.variants, args.sheet_fraction, hat_masks)
        for s in starts
    ]
    t = time.time()
    if w == 1:
        parts = [M.data_chunk(*j) for j in jobs]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=w, mp_context=ctx) as ex:
            parts = list(ex.map(M.data_chunk, *zip(*jobs, strict=False)))
    images = np.concatenate([p[0] for p in parts])
    ids = np.concatenate([p[1] for p in parts])
    hat = np.concatenate([p[2] for p in parts]) if hat_masks else None
    print(
        f"data: rendered {n} images with {args.variants} captions each "
        f"in {time.time() - t:.1f}s ({w} workers)",
        flush=True,
    )
    return images, ids, hat


def ema_update(ema, model, decay: float) -> None:
    import torch

    with torch.no_grad():
        torch._foreach_lerp_(
            list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - decay
        )


def reconstruction_loss(rec, x):
    """The VAE's image loss: L1 + MSE + 0.5 * L1 of the horizontal and vertical gradients
    (edges).  Returns (loss, l1, mse)."""
    l1 = (rec - x).abs().mean()
    l2 = ((rec - x) ** 2).mean()
    gx = ((rec[..., :, 1:] - rec[..., :, :-1]) - (x[..., :, 1:] - x[..., :, :-1])).abs().mean()
    gy = ((rec[..., 1:, :] - rec[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])).abs().mean()
    return l1 + l2 + 0.5 * (gx + gy), l1, l2


def psnr(a, b) -> float:
    """PSNR in dB of images in [-1, 1]."""
    mse = float(((a.float() - b.float()) ** 2).mean()) / 4.0
    return 10 * math.log10(1.0 / max(mse, 1e-12))


# --- training --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t_start = time.time()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    log = Log(out / "log.jsonl")
    # render first: worker processes are forked before torch starts any threads or CUDA
    images_np, ids_np, hat_np = (
        (None, None, None) if args.export_only else render_data(args, args.hat_weight > 0)
    )

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    use_bf16 = args.precision == "bf16" or (args.precision == "auto" and cuda)
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if use_bf16
        else (lambda: torch.autocast(device.type, enabled=False))
    )

    state: dict = {}
    if ckpt_path.exists() and not args.fresh:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        print(
            f"resuming from {ckpt_path}: phase {state['phase']}, step {state.get('step', 0)}, "
            f"{state['elapsed'] / 60:.1f} min used",
            flush=True,
        )
    else:
        state = {
            "phase": "vae",
            "step": 0,
            "elapsed": 0.0,
            "seed": args.seed,
            "args": vars(args) | {"out": str(out), "export": str(args.export)},
        }
    deadline = t_start + args.budget_minutes * 60 - state["elapsed"]
    extending = state.get("phase") == "unet" and bool(state.get("extensions"))
    if extending and args.extend_minutes <= 0:
        # an interrupted extension: finish its own budget (the run's total is spent)
        left = state["unet_budget"] - state.get("unet_elapsed", 0.0)
        deadline = t_start + max(0.0, left) + args.reserve_minutes * 60
        print(f"resuming the U-Net extension: {left / 60:.1f} min left", flush=True)
    if args.extend_minutes > 0:
        if state.get("phase") != "done":
            what = "extension" if extending else "checkpoint"
            raise SystemExit(
                f"--extend-minutes: the {what} is not finished; "
                "run the same command without --extend-minutes to resume it first"
            )
        state["phase"], state["optim"] = "unet", None
        state["unet_budget"] = args.extend_minutes * 60
        state["unet_elapsed"] = 0.0
        state.setdefault("extensions", []).append(
            {
                "from_step": state.get("step", 0),
                "minutes": args.extend_minutes,
                "lr": args.lr,
                "data": args.data,
                "hat_weight": args.hat_weight,
            }
        )
        deadline = t_start + (args.extend_minutes + args.reserve_minutes) * 60
        print(
            f"extending the U-Net phase by {args.extend_minutes} min from step {state['step']}",
            flush=True,
        )

    def elapsed_now() -> float:
        return state["elapsed"] + (time.time() - t_start)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    vae = M.build_vae().to(device)
    text_encoder = M.build_text_encoder().to(device)
    unet = M.build_unet().to(device)
    print(
        f"model: vae {M.count_parameters(vae) / 1e6:.2f}M, "
        f"text encoder {M.count_parameters(text_encoder) / 1e6:.2f}M, "
        f"unet {M.count_parameters(unet) / 1e6:.2f}M parameters; "
        f"device {device}, bf16 autocast {use_bf16}",
        flush=True,
    )
    if "vae" in state.get("models", {}):
        vae.load_state_dict(state["models"]["vae"])
    if "unet" in state.get("models", {}):
        text_encoder.load_state_dict(state["models"]["text_encoder"])
        unet.load_state_dict(state["models"]["unet"])

    def save_checkpoint(extra_models: dict | None = None, optim=None) -> None:
        models = {"vae": vae.state_dict()}
        if extra_models:
            models |= extra_models
        state["models"] = {
            k: {n: t.detach().cpu() for n, t in m.items()} for k, m in models.items()
        }
        state["optim"] = optim.state_dict() if optim is not None else None
        state["rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if cuda else None,
            "np": np.random.get_state(),
            "py": random.getstate(),
        }
        state["elapsed_at_save"] = elapsed_now()
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(state | {"elapsed": elapsed_now()}, tmp)
        os.replace(tmp, ckpt_path)

    def restore_rng() -> None:
        rng = state.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            if cuda and rng["cuda"] is not None:
                torch.cuda.set_rng_state_all(rng["cuda"])
            np.random.set_state(rng["np"])
            random.setstate(rng["py"])

    if args.export_only or state["phase"] == "done":
        export(state, vae, text_encoder, unet, args, log)
        return

    images = (
        torch.from_numpy(images_np).permute(0, 3, 1, 2).contiguous().to(device)
    )  # uint8 N,3,64,64
    caption_ids = torch.from_numpy(ids_np).to(device)
    hat_masks = torch.from_numpy(hat_np).to(device) if hat_np is not None else None
    n = images.shape[0]
    gen = torch.Generator(device=device)

    def batch_images(idx):
        return images[idx].float() / 127.5 - 1.0

    # ---- VAE ----
    if state["phase"] == "vae":
        train_time = max(0.0, deadline - time.time() - args.reserve_minutes * 60)
        state.setdefault("vae_budget", train_time * args.vae_fraction)
        state.setdefault("vae_elapsed", 0.0)
        opt = torch.optim.AdamW(
            vae.parameters(), lr=args.vae_lr, weight_decay=0.0, betas=(0.9, 0.99), fused=cuda
        )
        if state.get("optim") and state.get("step", 0) > 0:
            opt.load_state_dict(state["optim"])
        restore_rng()
        gen.manual_seed(args.seed * 1000 + 1 + state["step"])
        step = state["step"]
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
            if prog >= 1.0 or time.time() > deadline - args.reserve_minutes * 60:
                break
            lr = lr_at(prog, args.vae_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = torch.randint(0, n, (args.vae_batch,), device=device, generator=gen)
            x = batch_images(idx)
            if (
                args.vae_crop and args.vae_crop < x.shape[-1]
            ):  # fully convolutional: crops are cheaper
                c = args.vae_crop
                ox, oy = (
                    int(v) * 4
                    for v in torch.randint(
                        0, (x.shape[-1] - c) // 4 + 1, (2,), generator=gen, device=device
                    )
                )
                x = x[..., oy : oy + c, ox : ox + c]
            with autocast():
                post = vae.encode(x).latent_dist
                z = post.sample(generator=gen)
                rec = vae.decode(z).sample
            rec = rec.float()
            rec_loss, l1, l2 = reconstruction_loss(rec, x)
            kl = post.kl().mean() / z[0].numel()
            loss = rec_loss + 1e-5 * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 50 == 0:
                p = psnr(rec.detach(), x)
                lv, l1v, l2v = float(loss.detach()), float(l1.detach()), float(l2.detach())
                log.event(
                    phase="vae",
                    step=step,
                    loss=lv,
                    l1=l1v,
                    mse=l2v,
                    psnr=p,
                    lr=lr,
                    t=round(elapsed_now(), 1),
                )
                bar.n = min(100.0, 100 * prog)
                bar.set_postfix_str(f"step {step} loss {lv:.4f} psnr {p:.1f}dB")
                bar.refresh()
                log.line(
                    f"vae step {step:6d}  {100 * prog:5.1f}%  loss {lv:.4f}  psnr {p:5.2f} dB  "
                    f"lr {lr:.2e}  {elapsed_now() / 60:5.1f} min"
                )
            state["step"] = step
            if time.time() - last_ckpt > args.checkpoint_minutes * 60:
                save_checkpoint(optim=opt)
                last_ckpt = time.time()
        bar.close()
        state["vae_steps_done"] = step
        print(f"vae: {step} steps in {state['vae_elapsed'] / 60:.1f} min", flush=True)
        vae.eval()
        state["scaling_factor"] = latent_scaling(vae, images, device, autocast)
        state["phase"], state["step"], state["optim"] = "unet", 0, None
        state["vae_psnr_train"] = vae_psnr(vae, images[-512:], autocast)
        print(
            f"vae: scaling factor {state['scaling_factor']:.4f}, "
            f"psnr on last 512 training images {state['vae_psnr_train']:.2f} dB",
            flush=True,
        )
        save_checkpoint()
    vae.eval()
    vae.requires_grad_(False)

    # ---- latents ----
    t = time.time()
    # the latents depend on the data set and the (finished) VAE: kept beside the checkpoint
    lat_file = out / (
        f"latents-{args.seed}-{n}-{args.sheet_fraction}-{state.get('vae_steps_done', 0)}.pt"
    )
    if lat_file.exists():
        lat_mean, lat_std = (x.to(device) for x in torch.load(lat_file, map_location="cpu"))
    else:
        lat_mean, lat_std = encode_all(vae, images, autocast)
        torch.save((lat_mean.cpu(), lat_std.cpu()), lat_file)
    sf = state["scaling_factor"]
    print(f"latents: {tuple(lat_mean.shape)} encoded in {time.time() - t:.1f}s", flush=True)

    # ---- U-Net + text encoder ----
    if state["phase"] == "unet":
        import copy

        sched = M.train_scheduler()
        ac = sched.alphas_cumprod.to(device)
        snr = ac / (1 - ac)
        v_pred = sched.config.prediction_type == "v_prediction"
        if v_pred:
            # min-SNR-style cap on the clean steps; the pure-noise steps (SNR 0, where the
            # text alone decides the picture) keep full weight
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
            params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99), fused=cuda
        )
        if state.get("optim") and state.get("step", 0) > 0:
            opt.load_state_dict(state["optim"])
        restore_rng()
        train_time = max(0.0, deadline - time.time() - args.reserve_minutes * 60)
        state.setdefault("unet_budget", train_time)
        state.setdefault("unet_elapsed", 0.0)
        gen.manual_seed(args.seed * 1000 + 2 + state["step"])
        step = state["step"]
        phase_t0, el0 = time.time(), state["unet_elapsed"]
        last_ckpt = time.time()
        bar = progress_bar(100, "unet")
        unet.train()
        text_encoder.train()
        ema_loss = None
        while True:
            state["unet_elapsed"] = el0 + time.time() - phase_t0
            prog = state["unet_elapsed"] / max(1e-6, state["unet_budget"])
            if args.unet_steps:
                prog = max(prog, step / args.unet_steps)
            if prog >= 1.0 or time.time() > deadline - args.reserve_minutes * 60:
                break
            lr = lr_at(prog, args.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            b = args.batch
            idx = torch.randint(0, n, (b,), device=device, generator=gen)
            var = torch.randint(0, caption_ids.shape[1], (b,), device=device, generator=gen)
            ids = caption_ids[idx, var].long()
            lat = (
                lat_mean[idx].float()
                + lat_std[idx].float()
                * torch.randn(lat_mean[idx].shape, device=device, generator=gen)
            ) * sf
            noise = torch.randn(lat.shape, device=device, generator=gen)
            ts = torch.randint(
                0, sched.config.num_train_timesteps, (b,), device=device, generator=gen
            )
            a = ac[ts].view(-1, 1, 1, 1)
            noisy = a.sqrt() * lat + (1 - a).sqrt() * noise
            with autocast():
                enc = text_encoder(ids)[0]
                pred = unet(noisy, ts, enc).sample
            target = a.sqrt() * noise - (1 - a).sqrt() * lat if v_pred else noise
            err = (pred.float() - target) ** 2
            per = err.mean(dim=(1, 2, 3))  # the plain MSE, logged
            if hat_masks is not None:
                # spatial weight 1 + hat_weight on hat cells: the hats' share of the gradient
                # grows; the rest of the picture keeps its plain loss
                err = err * (1.0 + args.hat_weight * hat_masks[idx].float().unsqueeze(1))
            loss = (err.mean(dim=(1, 2, 3)) * weight[ts]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            decay = min(args.ema, (1 + step) / (10 + step))
            ema_update(ema_unet, unet, decay)
            ema_update(ema_text, text_encoder, decay)
            lv = float(per.detach().mean()) if step % 10 == 0 or ema_loss is None else None
            if lv is not None:
                ema_loss = lv if ema_loss is None else 0.9 * ema_loss + 0.1 * lv
            if step % 100 == 0:
                log.event(
                    phase="unet",
                    step=step,
                    loss=float(loss.detach()),
                    mse=ema_loss,
                    lr=lr,
                    t=round(elapsed_now(), 1),
                )
                bar.n = min(100.0, 100 * prog)
                bar.set_postfix_str(f"step {step} mse {ema_loss:.4f}")
                bar.refresh()
                log.line(
                    f"unet step {step:6d}  {100 * prog:5.1f}%  mse {ema_loss:.4f}  "
                    f"lr {lr:.2e}  {elapsed_now() / 60:5.1f} min"
                )
            state["step"] = step
            if time.time() - last_ckpt > args.checkpoint_minutes * 60:
                save_checkpoint(
                    {
                        "unet": unet.state_dict(),
                        "text_encoder": text_encoder.state_dict(),
                        "ema_unet": ema_unet.state_dict(),
                        "ema_text": ema_text.state_dict(),
                    },
                    opt,
                )
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
        save_checkpoint({"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict()})
    export(state, vae, text_encoder, unet, args, log)
    print(
        f"total wall time {(time.time() - t_start) / 60:.1f} min "
        f"(budget {args.budget_minutes} min)",
        flush=True,
    )


def encode_all(vae, images, autocast, batch: int = 1024):
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


def latent_scaling(vae, images, device, autocast) -> float:
    import torch

    with torch.no_grad(), autocast():
        x = images[: min(2048, images.shape[0])].float() / 127.5 - 1.0
        z = torch.cat(
            [vae.encode(x[i : i + 256]).latent_dist.mean.float() for i in range(0, x.shape[0], 256)]
        )
    return float(1.0 / z.std())


def vae_psnr(vae, images, autocast) -> float:
    import torch

    with torch.no_grad(), autocast():
        x = images.float() / 127.5 - 1.0
        rec = torch.cat(
            [
                vae.decode(vae.encode(x[i : i + 256]).latent_dist.mode()).sample.float()
                for i in range(0, x.shape[0], 256)
            ]
        )
    return psnr(rec.clamp(-1, 1), x)


def export(state, vae, text_encoder, unet, args, log) -> None:
    """Write the pipeline folder (fp16 U-Net/VAE weights, fp32 text encoder) atomically."""
    import shutil
    import tempfile

    import torch

    if state["phase"] != "done":
        raise SystemExit("export: the checkpoint holds no finished model yet; train first")
    vae, text_encoder, unet = (
        vae.cpu().float().eval(),
        text_encoder.cpu().float().eval(),
        unet.cpu().float().eval(),
    )
    vae.load_state_dict(state["models"]["vae"])
    text_encoder.load_state_dict(state["models"]["text_encoder"])
    unet.load_state_dict(state["models"]["unet"])
    vae.register_to_config(scaling_factor=state["scaling_factor"])
    dest = Path(args.export)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=dest.parent))
    try:
        M.write_tokenizer_files(tmp / "tokenizer-files")
        pipe = M.build_pipeline(vae, text_encoder, unet, tmp / "tokenizer-files")
        # samples grid before casting (fp32 on CPU)
        from toyworld.evaluate import sample_grid

        grid = sample_grid(pipe, seed=args.seed)
        unet.to(torch.float16)
        vae.to(torch.float16)
        pipe.save_pretrained(tmp / "pipeline", safe_serialization=True)
        M.write_tokenizer_files(tmp / "pipeline" / "tokenizer")  # also vocab.json + merges.txt
        summary = {
            k: state.get(k)
            for k in (
                "seed",
                "vae_steps_done",
                "unet_steps_done",
                "vae_elapsed",
                "unet_elapsed",
                "scaling_factor",
                "vae_psnr_train",
                "unet_final_mse",
                "elapsed_at_save",
                "extensions",
            )
        }
        summary["args"] = {
            k: (str(v) if isinstance(v, Path) else v) for k, v in state.get("args", {}).items()
        }
        summary["device"] = args.device
        summary["device_name"] = (
            torch.cuda.get_device_name()
            if args.device.startswith("cuda") and torch.cuda.is_available()
            else "cpu"
        )
        (Path(args.out) / "summary.json").write_text(
            json.dumps(summary, indent=2), encoding="utf-8"
        )
        grid.save(Path(args.out) / "samples.png")
        for keep in ("MODEL_CARD.md", "samples.png"):  # hand-written files next to the weights stay
            if (dest / keep).exists():
                shutil.copy2(dest / keep, tmp / "pipeline" / keep)
        old = None
        if dest.exists():
            old = dest.with_name(dest.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(dest, old)
        os.replace(tmp / "pipeline", dest)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"export: wrote {dest} "
        f"({sum(f.stat().st_size for f in dest.rglob('*') if f.is_file()) / 1e6:.1f} MB)",
        flush=True,
    )
    log.event(phase="export", dest=str(dest))


if __name__ == "__main__":
    main()
