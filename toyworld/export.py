"""Export a finished training checkpoint as a StableDiffusionPipeline folder (fp16 U-Net and
VAE, fp32 text encoder), written atomically beside the hand-written model card."""

from __future__ import annotations

import json
import os
from pathlib import Path

from toyworld import model as M


def export(state, vae, text_encoder, unet, args, log) -> None:
    """Write the pipeline folder (fp16 U-Net/VAE weights, fp32 text encoder) atomically."""
    import shutil
    import tempfile

    import torch

    models = state.get("models", {})
    if state["phase"] == "done":
        text_key, unet_key = "text_encoder", "unet"
    elif state["phase"] == "unet" and "ema_unet" in models:
        # a U-Net phase stopped part-way: its EMA weights as of the last checkpoint
        text_key, unet_key = "ema_text", "ema_unet"
        print(f"export: the U-Net phase's EMA weights at step {state.get('step')}", flush=True)
    else:
        raise SystemExit("export: the checkpoint holds no trained U-Net yet; train first")
    vae, text_encoder, unet = (
        vae.cpu().float().eval(),
        text_encoder.cpu().float().eval(),
        unet.cpu().float().eval(),
    )
    vae.load_state_dict(models["vae"])
    text_encoder.load_state_dict(models[text_key])
    unet.load_state_dict(models[unet_key])
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
        if state.get("buckets"):
            # the sizes it was trained at: comicgen paints a frame of their aspect at theirs
            scale = 2 ** (len(vae.config.block_out_channels) - 1)
            sizes = [[w * scale, h * scale] for h, w in state["buckets"].values()]
            (tmp / "pipeline" / "comicgen.json").write_text(
                json.dumps({"buckets": sizes}) + "\n", encoding="utf-8"
            )
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
                "init",
                "buckets",
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
