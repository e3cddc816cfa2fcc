"""The recipe's infusion-trained U-Net: toy-world pairs, ``comicgen.infusion.training``,
and the result installed next to the bundled model's own U-Net.

One call is one phase (a recipe stage): it writes the pairs if they are missing, trains
(``--unet`` to go on from an earlier phase's U-Net), and with ``--install`` copies the
U-Net into the model folder as ``unet-infusion`` (float16, like the own U-Net) and names
it in the folder's ``comicgen.json`` with the infusion settings it was trained with (and
:data:`PAINTED`, chosen on the benchmark's tuning split after training), so
``[infusion] unet = "auto"`` paints the infused panels with it::

    python -m toyworld.infusion_unet --model comicgen/bundled/toyworld \\
        --out .train/infusion-1 --steps 2000 --seed 1
    python -m toyworld.infusion_unet --model comicgen/bundled/toyworld \\
        --out .train/infusion-2 --unet .train/infusion-1/unet --steps 4000 --seed 2 \\
        --character-weight 4
    python -m toyworld.infusion_unet --model comicgen/bundled/toyworld \\
        --out .train/infusion-3 --unet .train/infusion-2/unet --pairs .train/pairs-3 \\
        --pairs-seed 12 --pairs-three 0.15 --steps 3500 --seed 4 --character-weight 4 \\
        --lr-schedule cosine --lr-warmup 100 --install
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

INSTALLED = "unet-infusion"
LEVELS = ["attention", "blocks"]  # what the U-Net is trained with, and painted with
# painted with clean references (the sheet at t = 0, run once per panel), though trained
# with matched ones: as good or better on identity on both splits of
# benchmarks/consistency.py and far cheaper uncached (docs/infusion.md, "Clean references")
PAINTED = {"reference_noise": "clean"}


def install(unet: Path, model: Path, settings: dict) -> Path:
    """Copy ``unet`` into ``model/unet-infusion`` (float16) and name it in comicgen.json."""
    from toyworld.trainkit import install_unet

    dest = install_unet(unet, model / INSTALLED)
    path = model / "comicgen.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data.update(infusion_unet=INSTALLED, infusion=settings)
    path.write_text(json.dumps(data) + "\n", encoding="utf-8")
    return dest


def main(argv: list[str] | None = None) -> None:
    from comicgen.infusion import training
    from toyworld.pairs import write_pairs

    ap = argparse.ArgumentParser(
        prog="python -m toyworld.infusion_unet", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--model", type=Path, required=True, help="the exported model folder")
    ap.add_argument("--out", type=Path, required=True, help="this phase's run folder")
    ap.add_argument("--pairs", type=Path, default=Path(".train/pairs"))
    ap.add_argument("--pairs-n", type=int, default=4000)
    ap.add_argument("--pairs-seed", type=int, default=11)
    ap.add_argument("--pairs-three", type=float, default=0.0, help="share of three-character pairs")
    ap.add_argument(
        "--pairs-facing",
        action="store_true",
        help="captions that name the facing (the shipped stages' pairs do not)",
    )
    ap.add_argument("--install", action="store_true", help="install the result in --model")
    ap.add_argument("--device", default="cpu")
    args, rest = ap.parse_known_args(argv)
    if not (args.pairs / "metadata.jsonl").is_file():
        print(f"writing {args.pairs_n} pairs to {args.pairs} …", flush=True)
        write_pairs(
            args.pairs,
            args.pairs_n,
            args.pairs_seed,
            three=args.pairs_three,
            facing=args.pairs_facing,
        )
    settings = {"levels": LEVELS}
    device = ["--device", "cpu"] if args.device == "cpu" else []
    train_argv = [
        "--model", str(args.model), "--data", str(args.pairs), "--out", str(args.out),
        "--infusion", json.dumps(settings), "--lr", "1e-4", "--checkpoint-every", "1000",
        "--resume", *device, *rest,
    ]  # fmt: skip
    training.main(train_argv)
    if args.install:
        print(f"installed: {install(args.out / 'unet', args.model, {**settings, **PAINTED})}")


if __name__ == "__main__":
    main()
