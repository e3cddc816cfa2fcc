"""The recipe's infused face model: the face model's U-Net trained on with each character's
sheet infused into its face crop (``toyworld.face_pairs``, ``comicgen.infusion.training``),
so that the face pass on an infused panel takes the identity from the sheet and the
expression and facing from the clause.

One call is one phase (a recipe stage): it writes the face pairs if they are missing,
trains from ``--unet`` (default: the model's ``faces/unet``, the face pass's plain U-Net)
with the face model's text encoder, and with ``--install`` copies the result (float16) into
``MODEL/faces/unet-infusion`` and names it in ``MODEL/faces/comicgen.json`` with the
infusion settings the face pass paints with (:func:`comicgen.faces.face_infusion`); crops
without a sheet keep the plain U-Net, which paints them better::

    python -m toyworld.face_infusion --model comicgen/bundled/toyworld \\
        --out .train/face-infusion-1 --pairs .train/face-pairs-1 --pairs-seed 31 --steps 3000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from toyworld.face_model import INSTALLED
from toyworld.infusion_unet import LEVELS, PAINTED

INSTALLED_UNET = "unet-infusion"
# chosen on benchmarks/consistency.py's tuning split (0.5 / 0.6 / 0.75): docs/infusion.md
STRENGTH = 0.5


def install(unet: Path, model: Path, settings: dict, strength: float | None = None) -> Path:
    """Copy ``unet`` (float16) into ``model/faces/unet-infusion`` and name it, with
    ``settings`` (and the ``strength`` it repaints at), in the face folder's
    ``comicgen.json``."""
    from toyworld.trainkit import install_unet

    faces = model / INSTALLED
    if not (faces / "unet" / "config.json").is_file():
        raise SystemExit(f"{faces}: no face model to install into; run its stages first")
    install_unet(unet, faces / INSTALLED_UNET)
    data = {"infusion_unet": INSTALLED_UNET, "infusion": settings}
    if strength is not None:
        data["strength"] = strength
    (faces / "comicgen.json").write_text(json.dumps(data) + "\n", encoding="utf-8")
    return faces


def main(argv: list[str] | None = None) -> None:
    from comicgen.infusion import training
    from toyworld.face_pairs import BUCKETS_HELP, parse_buckets, write_face_pairs

    ap = argparse.ArgumentParser(
        prog="python -m toyworld.face_infusion", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--model", type=Path, required=True, help="the exported model folder")
    ap.add_argument("--out", type=Path, required=True, help="this phase's run folder")
    ap.add_argument("--unet", type=Path, default=None, help="default: the model's faces/unet")
    ap.add_argument(
        "--text-encoder",
        type=Path,
        default=None,
        help="trained with this text encoder (default: the model's faces/text_encoder)",
    )
    ap.add_argument("--pairs", type=Path, default=Path(".train/face-pairs"))
    ap.add_argument("--pairs-n", type=int, default=4000)
    ap.add_argument("--pairs-seed", type=int, default=31)
    ap.add_argument("--pairs-buckets", default="square", help=BUCKETS_HELP)
    ap.add_argument(
        "--with-pairs",
        type=Path,
        nargs="*",
        default=[],
        help="an earlier phase's pair folders to train on too (before --pairs)",
    )
    ap.add_argument("--install", action="store_true", help="install the result in --model")
    ap.add_argument(
        "--strength",
        type=float,
        default=STRENGTH,
        help="the strength the face pass repaints a crop with its sheet at (installed)",
    )
    ap.add_argument("--device", default="cpu")
    args, rest = ap.parse_known_args(argv)
    faces = args.model / INSTALLED
    if not (args.pairs / "metadata.jsonl").is_file():
        print(f"writing {args.pairs_n} face pairs to {args.pairs} …", flush=True)
        buckets = parse_buckets(args.pairs_buckets)
        write_face_pairs(args.pairs, args.pairs_n, args.pairs_seed, buckets=buckets)
    settings = {"levels": LEVELS, "reference_noise": "matched"}  # trained as the panels' U-Net
    device = ["--device", "cpu"] if args.device == "cpu" else []
    train_argv = [
        "--model", str(args.model),
        "--text-encoder", str(args.text_encoder or faces / "text_encoder"),
        "--unet", str(args.unet or faces / "unet"),
        "--data", *map(str, args.with_pairs), str(args.pairs),
        "--out", str(args.out), "--infusion", json.dumps(settings), "--lr", "1e-4",
        "--character-weight", "4", "--checkpoint-every", "500", "--resume", *device, *rest,
    ]  # fmt: skip
    training.main(train_argv)
    if args.install:
        painted = {**settings, **PAINTED}
        print(f"installed: {install(args.out / 'unet', args.model, painted, args.strength)}")


if __name__ == "__main__":
    main()
