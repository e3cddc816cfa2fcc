"""Fine-tune a U-Net with infusion in the loop, so that it learns to use what is infused.

Each training example is a pair: a scene with one or more characters, and per character
some views of its model sheet (other expressions and facings than the scene's). The
scene is noised to a random timestep and denoised by the U-Net *inside* ``infused``:
the characters' sheet views run beside it as reference rows, and the chosen levels
(``[infusion] levels``: blocks, output, attention) carry them into the scene. The loss is
the usual diffusion loss on the scene's rows; its gradient flows through the reference
rows too, so the U-Net learns both to read a sheet and to write features worth reading
(the sheet as extra attention context is the IP-Adapter / reference-attention idea,
trained).

The whole U-Net or low-rank adapters (``--lora R``, through ``peft``) are trained, with
Accelerate: ``accelerate launch`` for several GPUs, ``--mixed-precision``, checkpoints
every ``--checkpoint-every`` steps under ``OUT/checkpoints/step-N`` (each with its
``unet`` or ``lora`` folder, scoreable as it is) and ``--resume``. Works on
any diffusers ``UNet2DConditionModel`` pipeline folder (SD 1.x, SD 2.x, SDXL, the bundled
model). Data: a folder in the format ``toyworld/pairs.py`` writes (``metadata.jsonl``
with scene, caption and per character its sheet images, description and box)::

    python -m toyworld.pairs --out pairs --n 2000
    accelerate launch -m comicgen.infusion.training --model comicgen/bundled/toyworld \\
        --data pairs --out runs/infusion --steps 2000 --lora 16
    python -m comicgen.infusion.training ... --steps 4000 --resume   # goes on

The result: ``OUT/unet`` (a whole U-Net folder) or ``OUT/lora`` (the adapter, loadable
with ``pipe.load_lora_weights``).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from comicgen.infusion.engine import infused
from comicgen.infusion.refs import CharacterRefs

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


class PairFolder:
    """The (scene, sheets, caption) pairs of a folder's ``metadata.jsonl`` (of several
    folders', one after the other, when given a list)."""

    def __init__(self, folder: Path | list[Path], size: int):
        folders = [Path(f) for f in folder] if isinstance(folder, list | tuple) else [Path(folder)]
        self.size = size
        self.items = [(each, item) for each in folders for item in self._read(each)]

    @staticmethod
    def _read(folder: Path) -> list[dict]:
        """The pairs of ``folder``'s ``metadata.jsonl`` (ValueError: the line that is not)."""
        meta = folder / "metadata.jsonl"
        if not meta.is_file():
            raise FileNotFoundError(f"{meta}: no such file (write pairs with toyworld.pairs)")
        items = []
        for n, line in enumerate(meta.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                item["scene"], item["caption"], item["characters"]  # noqa: B018
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{meta}:{n}: not a pair ({exc})") from None
            items.append(item)
        if not items:
            raise ValueError(f"{meta}: no pairs")
        return items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        folder, item = self.items[index]

        def load(name: str):
            image = Image.open(folder / name).convert("RGB")
            if image.size != (self.size, self.size):
                image = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
            return image

        characters = []
        for k, ch in enumerate(item["characters"]):
            characters.append(
                CharacterRefs(
                    name=f"c{k}",
                    images=[load(s) for s in ch["sheets"]],
                    masks=None,
                    description=ch.get("description", ""),
                    position=ch.get("position"),
                    box=tuple(ch["box"]) if ch.get("box") else None,
                    key=f"{index}:{k}",
                )
            )
        return {"scene": load(item["scene"]), "caption": item["caption"], "refs": characters}


def _latent(pipe, image, device):
    import numpy as np
    import torch

    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
    pixels = pixels.permute(2, 0, 1)[None].to(device, pipe.vae.dtype)
    with torch.no_grad():
        latent = pipe.vae.encode(pixels).latent_dist.sample()
    shift = pipe.vae.config.get("shift_factor", None)
    if shift is not None:
        latent = latent - shift
    return latent * pipe.vae.config.scaling_factor


def _conditioning(pipe, caption: str, size: int, device) -> dict:
    """The U-Net's text inputs for ``caption`` (SDXL: pooled embedding and time ids)."""
    import torch

    with torch.no_grad():
        result = pipe.encode_prompt(
            prompt=caption,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )
    kwargs = {"encoder_hidden_states": result[0]}
    if len(result) == 4:  # SDXL: (embeds, negative, pooled, negative pooled)
        time_ids = torch.tensor(
            [[size, size, 0, 0, size, size]], device=device, dtype=result[0].dtype
        )
        kwargs["added_cond_kwargs"] = {"text_embeds": result[2], "time_ids": time_ids}
    return kwargs


def character_weights(refs: list[CharacterRefs], hw: tuple[int, int], weight: float):
    """A (1, 1, h, w) loss weight: ``weight`` inside the characters' boxes, 1 elsewhere."""
    import torch

    h, w = hw
    out = torch.ones(1, 1, h, w)
    for ref in refs:
        if ref.box is None:
            continue
        x0, y0, x1, y1 = ref.box
        rows = slice(int(y0 * h), max(int(y0 * h) + 1, round(y1 * h)))
        cols = slice(int(x0 * w), max(int(x0 * w) + 1, round(x1 * w)))
        out[..., rows, cols] = weight
    return out


def _save(model, folder: Path, *, lora: bool) -> Path:
    """``folder/unet`` (the whole U-Net) or ``folder/lora`` (the adapter)."""
    if lora:
        from diffusers import StableDiffusionPipeline
        from peft.utils import get_peft_model_state_dict

        StableDiffusionPipeline.save_lora_weights(
            folder / "lora",
            unet_lora_layers=get_peft_model_state_dict(model),
            safe_serialization=True,
        )
        return folder / "lora"
    model.save_pretrained(folder / "unet")
    return folder / "unet"


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(
        (int(m.group(1)), p)
        for p in (out / "checkpoints").glob("step-*")
        if (m := re.fullmatch(r"step-(\d+)", p.name))
    )
    return found[-1][1] if found else None


def train(args: argparse.Namespace) -> dict:
    """Train; returns {"steps": done, "loss": last mean loss, "saved": path, "lr": the
    learning rate the schedule ended at}."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler, DiffusionPipeline
    from diffusers.optimization import get_scheduler

    from comicgen.settings import InfusionSettings

    out = Path(args.out)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.accumulate,
        project_dir=str(out),
        cpu=args.device == "cpu",
    )
    set_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = accelerator.device
    pipe = DiffusionPipeline.from_pretrained(args.model).to(device)
    pipe.set_progress_bar_config(disable=True)
    if args.text_encoder:  # e.g. a face model's, trained with its U-Net
        from transformers import CLIPTextModel

        own = pipe.text_encoder
        pipe.text_encoder = CLIPTextModel.from_pretrained(args.text_encoder).to(device, own.dtype)
    for name in ("vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            module.requires_grad_(False)
    if args.unet:  # go on from an earlier run's U-Net (a new phase: fresh optimizer)
        from diffusers import UNet2DConditionModel

        own = pipe.unet
        pipe.unet = UNet2DConditionModel.from_pretrained(args.unet).to(device, own.dtype)
    unet = pipe.unet
    if args.lora:
        from peft import LoraConfig

        unet.requires_grad_(False)
        unet.add_adapter(
            LoraConfig(
                r=args.lora,
                lora_alpha=args.lora,
                init_lora_weights="gaussian",
                target_modules=LORA_TARGETS,
            )
        )
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    # diffusers' schedules; the prepared scheduler steps once per process per step
    lr_scheduler = get_scheduler(
        args.lr_schedule,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup * accelerator.num_processes,
        num_training_steps=args.steps * accelerator.num_processes,
    )
    data = PairFolder(args.data, args.size)
    generator = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=1,
        shuffle=True,
        generator=generator,
        collate_fn=lambda batch: batch[0],
    )
    wrapped, optimizer, loader, lr_scheduler = accelerator.prepare(
        unet, optimizer, loader, lr_scheduler
    )
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    kind = noise_sched.config.get("prediction_type", "epsilon")
    settings = (
        InfusionSettings(**json.loads(args.infusion)) if args.infusion else InfusionSettings()
    )
    # the references' noise: a new draw every step (not the fixed one painting uses); their
    # rows run at every (random) timestep
    settings = settings.model_copy(update={"reference_seed": None, "reference_every": 1})

    step = 0
    if args.resume:
        path = latest_checkpoint(out)
        if path is not None:
            accelerator.load_state(str(path))
            step = int(path.name.split("-")[1])
            accelerator.print(f"resumed from {path.name}")
    losses: list[float] = []
    while step < args.steps:
        for pair in loader:
            if step >= args.steps:
                break
            with accelerator.accumulate(wrapped):
                latent = _latent(pipe, pair["scene"], device)
                g = torch.Generator(device="cpu").manual_seed(args.seed * 1_000_003 + step)
                noise = torch.randn(latent.shape, generator=g).to(device, latent.dtype)
                t = torch.randint(0, noise_sched.config.num_train_timesteps, (1,), generator=g)
                t = t.to(device)
                noisy = noise_sched.add_noise(latent, noise, t)
                cond = _conditioning(pipe, pair["caption"], args.size, device)
                with infused(
                    pipe,
                    pair["refs"],
                    settings,
                    height=args.size,
                    width=args.size,
                    num_inference_steps=noise_sched.config.num_train_timesteps,
                    guidance_scale=1.0,
                    seed=step,
                ):
                    pred = wrapped(noisy, t, **cond).sample
                if kind == "v_prediction":
                    target = noise_sched.get_velocity(latent, noise, t)
                elif kind == "sample":
                    target = latent
                else:
                    target = noise
                err = (pred.float() - target.float()) ** 2
                if args.character_weight != 1.0:
                    w = character_weights(pair["refs"], err.shape[-2:], args.character_weight)
                    loss = (err * w.to(err.device)).sum() / (w.sum() * err.shape[1])
                else:
                    loss = err.mean()
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, 1.0)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            losses.append(float(loss.detach()))
            step += 1
            if step % args.log_every == 0:
                recent = losses[-args.log_every :]
                accelerator.print(f"step {step} loss {sum(recent) / len(recent):.4f}")
            if args.checkpoint_every and step % args.checkpoint_every == 0:
                folder = out / "checkpoints" / f"step-{step:06d}"
                accelerator.save_state(str(folder))
                accelerator.wait_for_everyone()
                if accelerator.is_main_process:  # scoreable as it is (consistency.py --unet)
                    _save(accelerator.unwrap_model(wrapped), folder, lora=bool(args.lora))
    accelerator.wait_for_everyone()
    saved = None
    if accelerator.is_main_process:
        saved = _save(accelerator.unwrap_model(wrapped), out, lora=bool(args.lora))
    recent = losses[-args.log_every :] or [float("nan")]
    lr = lr_scheduler.get_last_lr()[0]
    return {"steps": step, "loss": sum(recent) / len(recent), "saved": saved, "lr": lr}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m comicgen.infusion.training", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--model", required=True, help="a diffusers pipeline folder")
    ap.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="a folder with metadata.jsonl (several: trained on together, in this order)",
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--unet", type=Path, help="start from this U-Net folder instead of the model's own"
    )
    ap.add_argument(
        "--text-encoder",
        type=Path,
        help="a text encoder folder to use instead of the model's own (kept frozen)",
    )
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64, help="training resolution (pixels)")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument(
        "--lr-schedule",
        choices=["constant", "constant_with_warmup", "cosine", "linear"],
        default="constant",
        help="learning-rate schedule over --steps (diffusers' get_scheduler)",
    )
    ap.add_argument("--lr-warmup", type=int, default=0, help="warm-up steps of the schedule")
    ap.add_argument("--lora", type=int, default=0, help="LoRA rank (0: train the whole U-Net)")
    ap.add_argument(
        "--character-weight",
        type=float,
        default=1.0,
        help="loss weight inside the characters' boxes (1: the plain diffusion loss; the "
        "identity the sheet must carry lives there)",
    )
    ap.add_argument("--accumulate", type=int, default=1, help="gradient accumulation steps")
    ap.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    ap.add_argument(
        "--infusion",
        default="",
        help='infusion settings as JSON, e.g. \'{"levels": ["attention", "out"]}\' '
        "(default: the [infusion] defaults)",
    )
    ap.add_argument("--checkpoint-every", type=int, default=500)
    ap.add_argument("--resume", action="store_true", help="go on from the latest checkpoint")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    ap.add_argument("--device", choices=["auto", "cpu"], default="auto")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    result = train(args)
    print(f"steps={result['steps']} loss={result['loss']:.4f} saved={result['saved']}")


if __name__ == "__main__":
    main()
