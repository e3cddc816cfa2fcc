"""The recipe of the shipped weights: ``python -m toyworld.train`` with no training options.

The bundled model was made by several runs of the same script, one after the other, each
continuing the last (a U-Net "extension" reopens a finished checkpoint with a new learning-
rate cycle; the second generation starts a new run from the exported first one).  The
stages below are those runs, in order, with the options they used; each is resumable (run
the recipe again after an interruption: finished stages are skipped, an interrupted one
continues from its checkpoint).  Runs are bounded by wall-clock minutes on the 2-core CPU
they were made on; ``--device cuda`` runs the same stages with a GPU's batch sizes and
budgets (not the same weights: the budgets are time, not steps).

    python -m toyworld.train                       # every stage, CPU
    python -m toyworld.train --stages 5-6          # only the second generation
    python -m toyworld.train --stages 8            # only the face-weighted decoder
    python -m toyworld.train --stages 9-11         # only the infusion-trained U-Net
    python -m toyworld.train --stages 12-19        # only the face pass's model (faces/)
    python -m toyworld.train --device cuda         # on a GPU
    python -m toyworld.train --dry-run             # print the stages' commands
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

RECIPE_OPTIONS = {"--device", "--stages", "--workers", "--threads", "--dry-run", "--export"}
GEN1 = ".train/toyworld"
GEN2 = ".train/toyworld-gen2"
BUCKETS = "square:0.4,wide:0.15,tall:0.15,strip-wide:0.15,strip-tall:0.15"
# the second generation's training options, shared by its first run and its extension
GEN2_ARGS = (
    ("--out", GEN2, "--init", "@export", "--data", "16000", "--batch", "32", "--lr", "4e-4")
    + ("--reserve-minutes", "3", "--checkpoint-minutes", "10")
    + ("--buckets", BUCKETS, "--face-weight", "4", "--hat-weight", "3", "--close-up", "0.6")
)
# every decoder fine-tune's GPU sizes
DECODER_GPU_ARGS = ("--minutes", "3", "--data", "48000", "--batch", "256")
# the face model's phases: close face crops, EMA weights, checkpoints every 8 minutes
FACE_RUN_ARGS = ("--batch", "32", "--ema", "0.995", "--checkpoint-minutes", "8")
FACE_RUN_ARGS += ("--reserve-minutes", "1")
FACE_ARGS = ("--data", "8000", *FACE_RUN_ARGS)
FACE_GPU_ARGS = ("--data", "96000", "--batch", "512", "--budget-minutes", "10")


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # "train" or "finetune_decoder"
    args: tuple[str, ...]
    gpu_args: tuple[str, ...] = ()  # replaces the CPU-sized options on --device cuda
    done_key: str = ""  # summary.json of the stage's run holds this when it is finished


STAGES = (
    Stage(
        "1 VAE and U-Net from scratch",
        "train",
        ("--out", GEN1, "--budget-minutes", "118", "--data", "12000", "--batch", "48")
        + ("--vae-lr", "1e-3", "--checkpoint-minutes", "10"),
        ("--budget-minutes", "15", "--data", "96000", "--batch", "512", "--vae-batch", "256"),
    ),
    Stage(
        "2 U-Net on more data",
        "train",
        ("--out", GEN1, "--data", "48000", "--batch", "48", "--lr", "4e-4")
        + ("--checkpoint-minutes", "10", "--extend-minutes", "210"),
        ("--data", "96000", "--batch", "512", "--extend-minutes", "20"),
    ),
    Stage(
        "3 hat-weighted loss",
        "train",
        ("--out", GEN1, "--data", "48000", "--batch", "48", "--lr", "4e-4", "--hat-weight", "4")
        + ("--checkpoint-minutes", "10", "--extend-minutes", "95"),
        ("--data", "96000", "--batch", "512", "--extend-minutes", "10"),
    ),
    Stage(
        "4 decoder fine-tune",
        "finetune_decoder",
        ("--minutes", "14", "--data", "12000"),
        DECODER_GPU_ARGS,
    ),
    Stage(
        "5 second generation: facing, faces, aspect-ratio buckets",
        "train",
        GEN2_ARGS + ("--budget-minutes", "88"),
        ("--data", "96000", "--batch", "512", "--budget-minutes", "15"),
    ),
    Stage(
        "6 second generation, longer",
        "train",
        GEN2_ARGS + ("--extend-minutes", "95"),
        ("--data", "96000", "--batch", "512", "--extend-minutes", "15"),
    ),
    Stage(
        "7 decoder fine-tune on the second generation's drawing",
        "finetune_decoder",
        ("--minutes", "20", "--data", "12000"),
        DECODER_GPU_ARGS,
    ),
    Stage(
        "8 decoder fine-tune, face-weighted",
        "finetune_decoder",
        ("--minutes", "30", "--data", "8000", "--face-weight", "8"),
        DECODER_GPU_ARGS,
    ),
    Stage(
        "9 infusion U-Net: the sheets in the loop (attention and blocks levels)",
        "infusion_unet",
        ("--out", ".train/infusion-1", "--steps", "2000", "--seed", "1", "--threads", "1"),
    ),
    Stage(
        "10 infusion U-Net, loss weighted on the characters",
        "infusion_unet",
        ("--out", ".train/infusion-2", "--unet", ".train/infusion-1/unet", "--steps", "4000")
        + ("--seed", "2", "--character-weight", "4", "--threads", "1"),
    ),
    Stage(
        "11 infusion U-Net, three-character pairs too, cosine decay; installed as unet-infusion",
        "infusion_unet",
        ("--out", ".train/infusion-3", "--unet", ".train/infusion-2/unet", "--steps", "3500")
        + ("--pairs", ".train/pairs-3", "--pairs-seed", "12", "--pairs-three", "0.15")
        + ("--seed", "4", "--character-weight", "4", "--lr-schedule", "cosine")
        + ("--lr-warmup", "100", "--threads", "1", "--install"),
    ),
    Stage(
        "12 face model: close face crops, from the model",
        "face_model",
        ("--out", ".train/faces-1", *FACE_ARGS, "--lr", "4e-4", "--budget-minutes", "37")
        + ("--seed", "21"),
        FACE_GPU_ARGS,
    ),
    Stage(
        "13 face model, loss weighted 7x on the faces' cells",
        "face_model",
        ("--out", ".train/faces-2", "--init", ".train/faces-1/export", *FACE_ARGS)
        + ("--lr", "4e-4", "--face-weight", "6", "--budget-minutes", "50", "--seed", "21"),
        FACE_GPU_ARGS,
    ),
    Stage(
        "14 face model, fresh crops, lower rate",
        "face_model",
        ("--out", ".train/faces-3", "--init", ".train/faces-2/export", *FACE_ARGS)
        + ("--lr", "3e-4", "--face-weight", "6", "--budget-minutes", "55", "--seed", "22"),
        FACE_GPU_ARGS,
    ),
    Stage(
        "15 face model, fresh crops again; installed as faces/",
        "face_model",
        ("--out", ".train/faces-4", "--init", ".train/faces-3/export", *FACE_ARGS)
        + ("--lr", "3e-4", "--face-weight", "6", "--budget-minutes", "50", "--seed", "23")
        + ("--install",),
        FACE_GPU_ARGS,
    ),
    Stage(
        "16 face model, sheet-trained: the face U-Net with each crop's sheet infused; "
        "installed as faces/unet-infusion",
        "face_infusion",
        ("--out", ".train/face-infusion-1", "--pairs", ".train/face-pairs-1", "--pairs-n", "8000")
        + ("--pairs-seed", "31", "--steps", "4000", "--lr-schedule", "cosine")
        + ("--lr-warmup", "100", "--seed", "43", "--threads", "1", "--install"),
    ),
    Stage(
        "17 face model, fifth phase: fresh crops, lower rate, then the mean of its weights "
        "and the fourth phase's; installed as faces/ (unet, text_encoder)",
        "face_model",
        ("--out", ".train/faces-5", "--init", ".train/faces-4/export", *FACE_ARGS)
        + ("--lr", "2.5e-4", "--face-weight", "6", "--budget-minutes", "45", "--seed", "24")
        + ("--average-with", ".train/faces-4/export", "--install"),
        FACE_GPU_ARGS,
    ),
    Stage(
        "18 face model, sheet-trained, second phase: on with the fifth phase's own text "
        "encoder and face pairs from every frame shape; installed as faces/unet-infusion",
        "face_infusion",
        ("--out", ".train/face-infusion-2", "--unet", ".train/face-infusion-1/unet")
        + ("--text-encoder", ".train/faces-5/export/text_encoder")
        + ("--pairs", ".train/face-pairs-2", "--pairs-n", "8000", "--pairs-seed", "33")
        + ("--pairs-buckets", "all", "--with-pairs", ".train/face-pairs-1")
        + ("--steps", "3000", "--lr", "5e-5", "--lr-schedule", "cosine", "--lr-warmup", "100")
        + ("--seed", "44", "--threads", "1", "--install"),
    ),
    Stage(
        "19 face model, sixth phase: 12,000 fresh crops, only the timesteps the face pass "
        "runs (below 600), then the mean of its weights and the fifth phase's mean; "
        "installed as faces/ (unet, text_encoder)",
        "face_model",
        ("--out", ".train/faces-6", "--init", ".train/faces-5/averaged", "--data", "12000")
        + (*FACE_RUN_ARGS, "--lr", "2.5e-4", "--face-weight", "6", "--max-timestep", "600")
        + ("--budget-minutes", "55", "--seed", "25")
        + ("--average-with", ".train/faces-5/averaged", "--install"),
        FACE_GPU_ARGS,
    ),
)


def is_recipe_call(argv: list[str]) -> bool:
    """True when ``argv`` holds only recipe options (the defaults: the shipped recipe)."""
    return all(a.split("=")[0] in RECIPE_OPTIONS for a in argv if a.startswith("--"))


def _replace(args: tuple[str, ...], new: tuple[str, ...]) -> list[str]:
    """``args`` with each option in ``new`` replaced by (or added as) its new value."""
    out = list(args)
    for i in range(0, len(new), 2):
        if new[i] in out:
            out[out.index(new[i]) + 1] = new[i + 1]
        else:
            out += [new[i], new[i + 1]]
    return out


def stage_argv(stage: Stage, opts: argparse.Namespace) -> list[str]:
    args = list(stage.args)
    if opts.device.startswith("cuda"):
        args = _replace(stage.args, stage.gpu_args)
    args = [str(opts.export) if a == "@export" else a for a in args]
    threads = ["--threads", str(opts.threads)] if opts.threads else []
    if stage.module == "train":
        args += ["--device", opts.device, "--export", str(opts.export), "--workers"]
        args += [str(opts.workers), *threads]
    elif stage.module == "face_model":  # trains and exports to its own run folder
        args += ["--device", opts.device, "--model", str(opts.export), "--workers"]
        args += [str(opts.workers), *threads]
    elif stage.module in ("infusion_unet", "face_infusion"):  # step-bounded: same on a GPU
        args += ["--device", opts.device, "--model", str(opts.export)]
    else:
        args += ["--device", opts.device, "--model", str(opts.export), "--workers"]
        args.append(str(opts.workers))
    return args


def _parse_stages(spec: str) -> list[int]:
    if spec == "all":
        return list(range(1, len(STAGES) + 1))
    out: list[int] = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def main(argv: list[str]) -> None:
    from comicgen.bundled import TOYWORLD_DIR

    ap = argparse.ArgumentParser(prog="python -m toyworld.train", description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--stages", default="all", help="e.g. 5 or 1-3 (default: all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--export", type=Path, default=TOYWORLD_DIR)
    ap.add_argument("--dry-run", action="store_true", help="print the stages and stop")
    opts = ap.parse_args(argv)
    from toyworld import face_infusion, face_model, finetune_decoder, infusion_unet, train

    runners = {
        "train": train.main,
        "finetune_decoder": finetune_decoder.main,
        "infusion_unet": infusion_unet.main,
        "face_model": face_model.main,
        "face_infusion": face_infusion.main,
    }
    for number in _parse_stages(opts.stages):
        stage = STAGES[number - 1]
        argv_i = stage_argv(stage, opts)
        print(f"stage {stage.name}: python -m toyworld.{stage.module} {' '.join(argv_i)}")
        if opts.dry_run:
            continue
        if stage.module in ("train", "face_model") and _finished(stage, argv_i):
            print("  finished before; skipped", flush=True)
            continue
        runners[stage.module](argv_i)


def _finished(stage: Stage, argv: list[str]) -> bool:
    """A stage whose run folder's summary records this very stage as done."""
    out = Path(argv[argv.index("--out") + 1])
    summary = out / "summary.json"
    if not summary.is_file():
        return False
    data = json.loads(summary.read_text(encoding="utf-8"))
    ext = [e.get("minutes") for e in data.get("extensions") or []]
    if "--extend-minutes" in argv:
        return float(argv[argv.index("--extend-minutes") + 1]) in ext
    return not ext and bool(data.get("unet_steps_done"))
