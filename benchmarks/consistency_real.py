"""Character consistency on a real checkpoint: the measures published tables use.

Takes a model (anything ``[model] name`` accepts), a folder of character sheets (a
``characters/`` folder: ``NAME.yaml`` + images, as ``comicgen characters import`` reads)
and a story; paints every panel of the story with each method:

- ``plain``: text to image, no character reference;
- ``img2img-0.5`` / ``img2img-0.75``: from the first character's first sheet view, at
  that strength (diffusers' image-to-image pipeline made from the same components);
- ``infused``: Infusion with the story's settings (comicgen's defaults unless it sets any);
- ``blocks``, ``out``, ``attention``: one Infusion level alone;
- ``seed``: the original method (``mode: seed``: block features, unmasked, unplaced).

and scores each panel with scoring models given by name or path:

- identity: CLIP image similarity (``--clip``, a ``CLIPModel``) and DINO image
  similarity (``--dino``, any ``AutoModel`` image backbone: DINO ViT-S/16, DINOv2, ...)
  between the panel *inside the character's box* and each view of its sheet (cropped to
  the character's mask), averaged over the views: DreamBooth's CLIP-I and DINO;
- prompt fidelity: CLIP similarity of the whole panel to its prompt (CLIP-T).

Scores are cosine similarities (not x100). Example::

    python benchmarks/consistency_real.py --model stable-diffusion-v1-5/stable-diffusion-v1-5 \\
        --characters characters/ --story stories/example.yaml --size 512 --steps 30 \\
        --clip openai/clip-vit-base-patch32 --dino facebook/dino-vits16 --json real.json

Nothing is downloaded when everything is a local folder; a hub id must be in the Hugging
Face cache (or the network reachable). Anything missing is named in one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METHODS = ("plain", "img2img-0.5", "img2img-0.75", "infused", "blocks", "out", "attention", "seed")
LEVEL_ONLY = {
    "blocks": {"levels": ["blocks"]},
    "out": {"levels": ["out"]},
    "attention": {"levels": ["attention"]},
    "seed": {"mode": "seed", "levels": ["blocks"]},
}
CLIP = "openai/clip-vit-base-patch32"  # DreamBooth's CLIP-I / CLIP-T
DINO = "facebook/dino-vits16"  # DreamBooth's DINO


class Missing(Exception):
    """Something the protocol needs is not on this machine (one line)."""


# -- inputs ---------------------------------------------------------------------------------


def _local_or_cached(name: str, option: str, what: str) -> str:
    """A folder to load ``name`` from: the folder itself, or a hub id's cached snapshot
    (downloaded when the network is allowed); else :class:`Missing`."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise Missing(f"{what} '{name}' ({option}) is a folder without config.json")
        return str(path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise Missing(f"{what} '{name}' ({option}): no such folder")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if not offline:
        try:
            return snapshot_download(name)
        except Exception:  # noqa: BLE001 - network or auth
            pass
    raise Missing(
        f"{what} '{name}' ({option}) is not on this machine: not a local folder and not in "
        f"the Hugging Face cache, and the hub cannot be reached — run 'hf download {name}' "
        f"on a connected machine, or pass {option} a local folder"
    )


@dataclass
class Scorers:
    clip: object
    clip_processor: object
    dino: object
    dino_processor: object

    @classmethod
    def load(cls, clip: str, dino: str, device: str) -> Scorers:
        from transformers import AutoImageProcessor, AutoModel, CLIPModel, CLIPProcessor

        clip_dir, dino_dir = clip, dino
        try:
            model = CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval().to(device)
            processor = CLIPProcessor.from_pretrained(clip_dir, local_files_only=True)
            backbone = AutoModel.from_pretrained(dino_dir, local_files_only=True).eval().to(device)
            images = AutoImageProcessor.from_pretrained(dino_dir, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).splitlines()[0][:200]
            raise Missing(f"a scoring model does not load ({first})") from None
        return cls(model, processor, backbone, images)

    def _unit(self, x):
        return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    def clip_images(self, images):
        import torch

        inputs = self.clip_processor(images=images, return_tensors="pt").to(self.clip.device)
        with torch.inference_mode():
            out = self.clip.get_image_features(**inputs)
        return self._unit(getattr(out, "pooler_output", out))

    def clip_texts(self, texts):
        import torch

        tok = self.clip_processor.tokenizer
        inputs = tok(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            out = self.clip.get_text_features(**inputs.to(self.clip.device))
        return self._unit(getattr(out, "pooler_output", out))

    def dino_images(self, images):
        import torch

        inputs = self.dino_processor(images=images, return_tensors="pt").to(self.dino.device)
        with torch.inference_mode():
            out = self.dino(**inputs)
        return self._unit(out.last_hidden_state[:, 0])  # the class token (DINO's feature)


def sheet_views(refs) -> list:
    """Each reference image cropped to its character's mask (the whole image if empty)."""
    import numpy as np

    views = []
    for image, mask in zip(refs.images, refs.masks or [None] * len(refs.images), strict=True):
        if mask is None:
            from comicgen.infusion import reference_mask

            alpha = reference_mask(image) > 0.5
        else:
            alpha = np.asarray(mask.convert("L")) > 127
        ys, xs = np.nonzero(alpha)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else None
        views.append(image.convert("RGB").crop(box) if box else image.convert("RGB"))
    return views


def character_box(refs) -> tuple[float, float, float, float]:
    from comicgen.infusion import position_box

    return refs.box or position_box(refs.position)


def crop(image, box):
    w, h = image.size
    x0, y0, x1, y1 = box
    return image.crop((round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)))


# -- painting -------------------------------------------------------------------------------


def paint(painter, method: str, job, refs, img2img):
    """One panel with ``method``; ``job`` is the story's PaintJob (with its characters)."""
    from dataclasses import replace

    import torch

    from comicgen.settings import InfusionSettings

    if method == "plain" or not refs:
        return painter.paint(replace(job, characters=[]))
    if method.startswith("img2img"):
        start = refs[0].images[0].convert("RGB").resize((job.width, job.height))
        with torch.inference_mode():
            return img2img(
                prompt=job.prompt,
                negative_prompt=job.negative_prompt or None,
                image=start,
                strength=float(method.split("-")[1]),
                num_inference_steps=job.steps,
                guidance_scale=job.guidance,
                generator=torch.Generator("cpu").manual_seed(job.seed),
            ).images[0]
    settings = job.infusion
    if method in LEVEL_ONLY:
        data = settings.model_dump() | LEVEL_ONLY[method]
        settings = InfusionSettings.model_validate(data)
    return painter.paint(replace(job, infusion=settings))


def make_img2img(pipe):
    from diffusers import AutoPipelineForImage2Image

    img2img = AutoPipelineForImage2Image.from_pipe(pipe)
    img2img.set_progress_bar_config(disable=True)
    return img2img


# -- the run --------------------------------------------------------------------------------


def check_inputs(args) -> tuple[str, str]:
    """The scoring models' folders; :class:`Missing` naming everything that is not here."""
    from comicgen.errors import ComicgenError
    from comicgen.models import inspect_model

    missing, folders = [], []
    for path, option in ((args.characters, "--characters"), (args.story, "--story")):
        if not Path(path).exists():
            missing.append(f"{option} {path}: no such file or folder")
    try:
        inspect_model(args.model, base=Path.cwd())
    except ComicgenError as exc:
        missing.append(f"the model (--model): {exc.line()}")
    for name, option, what in ((args.clip, "--clip", "CLIP"), (args.dino, "--dino", "DINO")):
        try:
            folders.append(_local_or_cached(name, option, f"the {what} scoring model"))
        except Missing as exc:
            missing.append(str(exc))
    if missing:
        raise Missing("missing: " + "; ".join(missing))
    return folders[0], folders[1]


def prepare(args, folder: Path):
    """(painter, [(PaintJob, PanelJob)]) for the story."""
    from comicgen.errors import ComicgenError
    from comicgen.jobs import plan
    from comicgen.library import Library
    from comicgen.painter import Painter
    from comicgen.painting import _paint_job
    from comicgen.workspace import Workspace

    ws = Workspace.create(folder)  # a scratch workspace: the library of the sheets
    model = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    ws.config.model.name = model
    ws.config.model.device = args.device
    ws.config.model.memory = args.memory
    if args.size:
        ws.config.render.size = args.size
    if args.steps:
        ws.config.render.steps = args.steps
    with Library.open(ws.db_path, ws.cache_dir) as library:
        try:
            library.import_folder(Path(args.characters), allow_outside=True)
            the_plan = plan(ws, Path(args.story).resolve(), library, allow_outside=True)
        except ComicgenError as exc:
            raise Missing(exc.line()) from None
        if the_plan.model_name != model:
            raise Missing(
                f"the story sets model: {the_plan.model_name}; the protocol paints with "
                "--model (remove the story's model: line)"
            )
        jobs = the_plan.jobs[: args.panels] if args.panels else the_plan.jobs
        paint_jobs = [(_paint_job(j, library), j) for j in jobs]  # the sheets, loaded
    return Painter.load(ws.config.model, info=the_plan.info), paint_jobs


def score_panel(scorers: Scorers, image, job) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = {"clip_t": [], "clip_i": [], "dino": []}
    scores["clip_t"].append(
        float(scorers.clip_images([image]) @ scorers.clip_texts([job.prompt]).T)
    )
    for refs in job.characters:
        region = crop(image, character_box(refs))
        views = sheet_views(refs)
        clip = scorers.clip_images([region, *views])
        dino = scorers.dino_images([region, *views])
        scores["clip_i"].append(float((clip[1:] @ clip[0]).mean()))
        scores["dino"].append(float((dino[1:] @ dino[0]).mean()))
    return scores


def run(args) -> dict[str, dict]:
    with tempfile.TemporaryDirectory(prefix="comicgen-consistency-") as folder:
        return _run(args, Path(folder))


def _run(args, folder: Path) -> dict[str, dict]:
    import torch

    torch.set_num_threads(args.threads)
    from transformers.utils import logging as transformers_logging

    from comicgen.painter import pick_device

    transformers_logging.disable_progress_bar()

    clip, dino = check_inputs(args)
    scorers = Scorers.load(clip, dino, pick_device(args.device))
    painter, jobs = prepare(args, folder)
    img2img = (
        make_img2img(painter.pipe) if any(m.startswith("img2img") for m in args.methods) else None
    )
    results = {}
    for method in args.methods:
        totals: dict[str, list[float]] = {"clip_t": [], "clip_i": [], "dino": []}
        begin = time.perf_counter()
        for paint_job, panel in jobs:
            image = paint(painter, method, paint_job, list(paint_job.characters), img2img)
            if args.save:
                folder = Path(args.save) / method
                folder.mkdir(parents=True, exist_ok=True)
                image.save(folder / f"{panel.id}.png")
            for key, values in score_panel(scorers, image, paint_job).items():
                totals[key] += values
        seconds = (time.perf_counter() - begin) / max(1, len(jobs))
        results[method] = {k: _mean(v) for k, v in totals.items()} | {
            "n_panels": len(jobs),
            "n_characters": len(totals["clip_i"]),
            "seconds_per_panel": seconds,
        }
        row = results[method]
        print(
            f"{method:<13} CLIP-I {_fmt(row['clip_i'])}  DINO {_fmt(row['dino'])}  "
            f"CLIP-T {_fmt(row['clip_t'])}  ({seconds:.1f} s/panel)",
            flush=True,
        )
    return results


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _fmt(value) -> str:
    return (
        "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
    )


def table(results: dict[str, dict]) -> str:
    lines = [
        "| method | CLIP-I (identity) | DINO (identity) | CLIP-T (prompt) | panels | characters |",
        "|---|---|---|---|---|---|",
    ]
    for method, r in results.items():
        lines.append(
            f"| {method} | {_fmt(r['clip_i'])} | {_fmt(r['dino'])} | {_fmt(r['clip_t'])} | "
            f"{r['n_panels']} | {r['n_characters']} |"
        )
    return "\n".join(lines)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="what [model] name accepts")
    ap.add_argument("--characters", required=True, type=Path, help="NAME.yaml + images")
    ap.add_argument("--story", required=True, type=Path, help="a story YAML")
    ap.add_argument("--clip", default=CLIP, help=f"CLIPModel id or folder (default {CLIP})")
    ap.add_argument("--dino", default=DINO, help=f"image AutoModel id or folder (default {DINO})")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    ap.add_argument("--size", type=int, help="panel side (default: the model's native size)")
    ap.add_argument("--steps", type=int, help="denoising steps (default: the story's)")
    ap.add_argument("--panels", type=int, help="only the first N panels")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--memory", default="auto", choices=("auto", "low", "lowest"))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--save", type=Path, help="write every panel under this folder")
    ap.add_argument("--json", type=Path, help="write the scores here")
    args = ap.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        ap.error(
            f"unknown method {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from comicgen.errors import ComicgenError

    try:
        results = run(args)
    except (Missing, ComicgenError) as exc:
        line = exc.line() if isinstance(exc, ComicgenError) else str(exc)
        print(f"consistency_real: {line}", file=sys.stderr)
        return 2
    print("\n" + table(results))
    print(
        "\nCLIP-I / DINO: the panel inside each character's box against its sheet views; "
        f"CLIP-T: the panel against its prompt. Scored with {args.clip} and {args.dino}."
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
