"""The recipe's face model (the face pass's, :mod:`comicgen.faces`): ``toyworld.train`` on
close face crops (``--buckets face:1``, :mod:`toyworld.face_crops`), and the last phase's
U-Net and text encoder installed as the model folder's ``faces/`` (the face pass paints
with the panel model's VAE).

One call is one phase (a recipe stage): it trains from ``--init`` (default: the model
folder itself) into ``--out``, exports to ``OUT/export`` (the next phase's ``--init``),
and with ``--install`` copies the export's ``unet/`` and ``text_encoder/`` into
``MODEL/faces``. Every other option goes to ``toyworld.train``::

    python -m toyworld.face_model --model comicgen/bundled/toyworld \\
        --out .train/faces-1 --data 8000 --batch 32 --lr 4e-4 --budget-minutes 37
    python -m toyworld.face_model --model comicgen/bundled/toyworld \\
        --out .train/faces-2 --init .train/faces-1/export --face-weight 6 ... --install

``--average-with EXPORT`` installs the mean of the phase's weights and an earlier phase's,
written to ``OUT/averaged`` (``OUT/export`` stays the phase's own; the fifth phase ships
the mean of its own and the fourth's: model card); ``OUT/averaged`` is a whole pipeline
folder (the export's VAE, tokenizer and scheduler beside the mean), so a later phase can
start from it (``--init``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

INSTALLED = "faces"
PARTS = ("unet", "text_encoder")  # what a face folder holds; the VAE is the panel model's


def install(export: Path, model: Path) -> Path:
    """Copy ``export``'s U-Net and text encoder into ``model/faces``, each replacing its
    folder whole; the rest of ``faces/`` (the sheet-trained U-Net, comicgen.json) stays."""
    missing = [p for p in PARTS if not (export / p / "config.json").is_file()]
    if missing:
        raise SystemExit(f"{export}: no {', '.join(missing)}/ to install; was the run exported?")
    from toyworld.trainkit import replacing_folder

    dest = model / INSTALLED
    dest.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        with replacing_folder(dest / part) as tmp:
            shutil.copytree(export / part, tmp, dirs_exist_ok=True)
    return dest


def main(argv: list[str] | None = None) -> None:
    from toyworld import train

    ap = argparse.ArgumentParser(
        prog="python -m toyworld.face_model", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--model", type=Path, required=True, help="the exported model folder")
    ap.add_argument("--out", type=Path, required=True, help="this phase's run folder")
    ap.add_argument("--init", type=Path, default=None, help="default: --model")
    ap.add_argument("--install", action="store_true", help="install the result in --model")
    ap.add_argument(
        "--average-with",
        type=Path,
        default=None,
        help="an earlier phase's export: install the mean of its and this phase's U-Net and "
        "text encoder (a weight soup, written to OUT/averaged; the recipe's fifth phase)",
    )
    args, rest = ap.parse_known_args(argv)
    export = args.out / "export"
    init = args.init or args.model
    train.main(
        ["--out", str(args.out), "--init", str(init), "--export", str(export)]
        + ["--buckets", "face:1", *rest]
    )
    result = export
    if args.average_with is not None:  # the export stays this phase's own weights
        from toyworld.trainkit import average_weights

        result = args.out / "averaged"
        for part in PARTS:
            average_weights([export / part, args.average_with / part], result / part)
        for entry in export.iterdir():  # the rest as exported: a whole pipeline folder
            if entry.is_dir() and entry.name not in PARTS:
                shutil.copytree(entry, result / entry.name, dirs_exist_ok=True)
            elif entry.is_file():
                shutil.copy2(entry, result / entry.name)
        print(f"averaged with {args.average_with}: {result}")
    if args.install:
        print(f"installed: {install(result, args.model)}")


if __name__ == "__main__":
    main()
