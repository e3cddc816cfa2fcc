"""Character consistency on the bundled model: does Infusion carry a character's identity?

Every panel shows a toy-world character whose identity the prompt does **not** state: the
prompt says only "a character" (plus expression, position, shot, sky, ground and prop),
so its body shape, colour, hat and pattern can only come from its reference sheet. The
toy world's attribute reader reads each panel back, and the benchmark prints, per method:

- identity match: the fraction of panels whose character has the reference's pattern,
  colour, shape and hat (each, their mean, and all four at once; scarf for information);
- prompt adherence: the fraction of panels whose sky, ground and prop are the prompt's.

Methods: plain text-to-image (chance level), img2img from the front view of the sheet at
strength 0.5 and 0.75 (the baseline Infusion was proposed against), Infusion at several
weights and layer choices, the original (``mode: seed``) method, and regional Infusion
with two characters (each side read and compared with its own character).

Run it from the repository root (about 15 minutes on 2 CPU cores)::

    python benchmarks/consistency.py            # 48 seeds, every method
    python benchmarks/consistency.py --seeds 12 --methods plain,infused

The last line is ``identity_match infused=X plain=Y prompt_adherence infused=Z plain=W``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL = ROOT / "comicgen" / "bundled" / "toyworld"
IDENTITY = ("pattern", "color", "shape", "hat")
SCENE = ("sky", "ground", "prop")
VIEWS = ("front", "look-left", "look-right")  # reference images per character


@dataclass
class Panel:
    seed: int
    prompt: str
    characters: list  # world.Character, one or two
    positions: list[str]
    shot: str
    sky: str
    ground: str
    prop: str


def make_panels(n: int, two: bool, base_seed: int = 2024) -> list[Panel]:
    from toyworld import world as W

    panels = []
    for i in range(n):
        rng = random.Random(f"consistency:{base_seed}:{two}:{i}")
        shot = W.SHOTS[i % 2]
        if two:
            positions = ["left", "right"]
            first = W.sample_character(rng)
            second = W.sample_character(rng)
            while second.color == first.color:  # tell the two apart
                second = W.sample_character(rng)
            chars = [first, second]
        else:
            positions = [W.POSITIONS[(i // 2) % 3]]
            chars = [W.sample_character(rng)]
        sky = rng.choice(list(W.SKIES))
        ground = rng.choice(list(W.GROUNDS))
        prop = rng.choice(W.PROPS)
        clauses = [
            f"a character looking {c.expression} {W.POSITION_PHRASE[p]}"
            for c, p in zip(chars, positions, strict=True)
        ]
        clauses += [W.SHOT_PHRASE[shot], f"{sky} sky", ground, W.PROP_PHRASE[prop]]
        panels.append(
            Panel(1000 + i, ", ".join(clauses), chars, positions, shot, sky, ground, prop)
        )
    return panels


def toy_box(shot: str, positions: list[str], index: int) -> tuple[float, float, float, float]:
    """Where the toy world draws a character (body and hat), as fractions of the panel."""
    from toyworld import world as W

    cx, s = W.layout(shot, tuple(positions))[index]
    feet = W.FEET[shot]
    top = feet - s * (1.0 + W.HAT_HEIGHT)
    x0, x1 = (cx - 0.55 * s) / W.SIZE, (cx + 0.55 * s) / W.SIZE
    return (max(0.0, x0), max(0.0, top / W.SIZE), min(1.0, x1), min(1.0, feet / W.SIZE))


_SHEETS: dict = {}


def sheet_images(ch) -> list:
    from toyworld import world as W

    if ch not in _SHEETS:
        views = dict(W.sheet_views(ch))
        _SHEETS[ch] = [W.render(views[v], W.SIZE) for v in VIEWS]
    return _SHEETS[ch]


def character_refs(panel: Panel, placement: str):
    from comicgen.infusion import CharacterRefs
    from toyworld import world as W

    refs = []
    for i, (ch, pos) in enumerate(zip(panel.characters, panel.positions, strict=True)):
        box = toy_box(panel.shot, panel.positions, i) if placement == "box" else None
        refs.append(
            CharacterRefs(
                name=f"c{i}",
                images=sheet_images(ch),
                masks=None,
                description=W.describe(ch, color=False, shape=False, hat=False),
                position=pos,
                box=box,
                key=f"{ch}",
            )
        )
    return refs


def score(image, panel: Panel) -> dict[str, list[float]]:
    from toyworld import reader

    reading = reader.read(image)
    out: dict[str, list[float]] = {}
    for k in SCENE:
        out.setdefault(k, []).append(float(getattr(reading, k) == getattr(panel, k)))
    for ch, pos in zip(panel.characters, panel.positions, strict=True):
        got = reading.character(pos)
        if got is None and len(panel.characters) == 1 and reading.characters:
            got = reading.characters[0]  # one character, seen elsewhere: still read it
        side = f"{pos}:" if len(panel.characters) > 1 else ""
        hits = []
        for k in (*IDENTITY, "scarf"):
            ok = got is not None and getattr(got, k) == getattr(ch, k)
            out.setdefault(side + k, []).append(float(ok))
            if k in IDENTITY:
                hits.append(ok)
        out.setdefault(side + "all4", []).append(float(all(hits)))
    return out


@dataclass
class Method:
    name: str
    kind: str  # "plain", "img2img", "infusion"
    strength: float = 0.0
    settings: dict | None = None
    placement: str = "position"  # "position" or "box" (the toy world's own layout)
    two: bool = False


def methods() -> list[Method]:
    """Every method of the table (names are what --methods selects)."""
    seed_layers = {"down": [0.3], "mid": 0.3, "up": [0.3, 0.3, 0.3], "out": 0.0}
    blocks_up = {"down": [0.0], "mid": 0.0, "up": [0.5, 0.5, 0.0], "out": 0.0}
    out_only = {"down": [0.0], "mid": 0.0, "up": [0.0], "out": 1.0}
    return [
        Method("plain", "plain"),
        Method("img2img-0.5", "img2img", strength=0.5),
        Method("img2img-0.75", "img2img", strength=0.75),
        Method(
            "seed-0.3", "infusion", settings={"mode": "seed", "layers": seed_layers, "skips": False}
        ),
        Method("infused", "infusion", settings={}),
        Method("infused-box", "infusion", settings={}, placement="box"),
        Method("w0.5", "infusion", settings={"weight": 0.5}),
        Method("cutoff-0.8", "infusion", settings={"schedule": "cutoff", "cutoff": 0.8}),
        Method("skips", "infusion", settings={"skips": True}),
        Method("out-only", "infusion", settings={"layers": out_only}),
        Method("blocks-up", "infusion", settings={"layers": blocks_up, "schedule": "decay"}),
        Method("plain-2", "plain", two=True),
        Method("regional-2", "infusion", settings={}, two=True),
        Method("mean-2", "infusion", settings={"mode": "mean"}, two=True),
    ]


def run_method(pipe, method: Method, panels: list[Panel], args, cache) -> dict[str, float]:
    import torch

    from comicgen.infusion import infused
    from comicgen.settings import InfusionSettings

    totals: dict[str, list[float]] = {}
    size = 64
    kw = dict(height=size, width=size, num_inference_steps=args.steps, guidance_scale=args.guidance)
    rescale = {"guidance_rescale": args.guidance_rescale}
    start = time.perf_counter()
    if method.kind == "img2img":
        from diffusers import StableDiffusionImg2ImgPipeline

        img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
        img2img.set_progress_bar_config(disable=True)
    for panel in panels:
        generator = torch.Generator("cpu").manual_seed(panel.seed)
        if method.kind == "plain":
            image = pipe(prompt=panel.prompt, generator=generator, **kw, **rescale).images[0]
        elif method.kind == "img2img":
            image = img2img(
                prompt=panel.prompt,
                image=sheet_images(panel.characters[0])[0],
                strength=method.strength,
                generator=generator,
                num_inference_steps=args.steps,
                guidance_scale=args.guidance,
                **rescale,
            ).images[0]
        else:
            settings = InfusionSettings(**method.settings)
            refs = character_refs(panel, method.placement)
            with infused(pipe, refs, settings, seed=panel.seed, cache=cache, **kw):
                image = pipe(prompt=panel.prompt, generator=generator, **kw, **rescale).images[0]
        if args.save:
            folder = Path(args.save) / method.name
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{panel.seed}.png")
        for k, v in score(image, panel).items():
            totals.setdefault(k, []).extend(v)
    seconds = (time.perf_counter() - start) / len(panels)
    result = {k: sum(v) / len(v) for k, v in totals.items()}
    result["seconds"] = seconds
    sides = [""] if not method.two else ["left:", "right:"]
    for side in sides:
        result[side + "identity"] = sum(result[side + k] for k in IDENTITY) / len(IDENTITY)
    result["adherence"] = sum(result[k] for k in SCENE) / len(SCENE)
    return result


def print_table(rows: list[tuple[Method, dict[str, float]]]) -> None:
    single = [(m, r) for m, r in rows if not m.two]
    double = [(m, r) for m, r in rows if m.two]
    cols = ("identity", *IDENTITY, "all4", "scarf", "adherence", *SCENE, "seconds")
    if single:
        print("\nOne character (identity: mean of pattern, colour, shape, hat):")
        print(f"| {'method':<14} | " + " | ".join(f"{c:>9}" for c in cols) + " |")
        print("|" + "-" * 16 + "|" + "|".join("-" * 11 for _ in cols) + "|")
        for m, r in single:
            print(f"| {m.name:<14} | " + " | ".join(f"{r[c]:>9.3f}" for c in cols) + " |")
    if double:
        cols2 = ("left:identity", "right:identity", "left:all4", "right:all4", "adherence")
        print("\nTwo characters, left and right (each side against its own reference):")
        print(f"| {'method':<14} | " + " | ".join(f"{c:>14}" for c in cols2) + " |")
        print("|" + "-" * 16 + "|" + "|".join("-" * 16 for _ in cols2) + "|")
        for m, r in double:
            print(f"| {m.name:<14} | " + " | ".join(f"{r[c]:>14.3f}" for c in cols2) + " |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=48, help="panels per method (default 48)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument(
        "--guidance-rescale",
        type=float,
        default=None,
        help="CFG rescale (default: as comicgen render does, 0.7 for zero-terminal-SNR models)",
    )
    ap.add_argument("--methods", default="", help="comma-separated subset of the methods")
    ap.add_argument("--model", type=Path, default=MODEL, help="a StableDiffusionPipeline folder")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--save", type=Path, help="write every panel under this folder")
    ap.add_argument(
        "--extra",
        default="",
        help='more infusion methods as JSON (or @file.json), e.g. \'{"w2": {"weight": 2.0}}\' '
        '(keys "two": true and "placement": "box" pick the two-character panels and the toy '
        "world's own boxes)",
    )
    args = ap.parse_args(argv)

    import torch
    from diffusers import StableDiffusionPipeline

    from comicgen.infusion import FeatureCache

    torch.set_num_threads(args.threads)
    pipe = StableDiffusionPipeline.from_pretrained(args.model).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    if args.guidance_rescale is None:
        from comicgen.painter import recommended_guidance_rescale

        args.guidance_rescale = recommended_guidance_rescale(pipe.scheduler.config)
    chosen = [m for m in methods() if not args.methods or m.name in args.methods.split(",")]
    if args.extra:
        text = Path(args.extra[1:]).read_text() if args.extra.startswith("@") else args.extra
        for name, spec in json.loads(text).items():
            spec = dict(spec)
            two, placement = spec.pop("two", False), spec.pop("placement", "position")
            chosen.append(Method(name, "infusion", settings=spec, placement=placement, two=two))
    if not chosen:
        ap.error(f"no such method; choose from {', '.join(m.name for m in methods())}")
    panels = {False: make_panels(args.seeds, False), True: make_panels(args.seeds, True)}
    cache = FeatureCache(max_bytes=256 * 1024**2)
    rows = []
    begin = time.perf_counter()
    for method in chosen:
        result = run_method(pipe, method, panels[method.two], args, cache)
        rows.append((method, result))
        keys = ("left:identity", "right:identity") if method.two else ("identity", "adherence")
        summary = " ".join(f"{k}={result[k]:.3f}" for k in keys)
        print(f"{method.name:<14} {summary} ({result['seconds']:.2f} s/panel)", flush=True)
    print_table(rows)
    print(
        f"\n{args.seeds} panels per method, {args.steps} steps, guidance {args.guidance} "
        f"(rescale {args.guidance_rescale}), "
        f"{time.perf_counter() - begin:.0f} s in all"
    )
    by_name = {m.name: r for m, r in rows}
    if "infused" in by_name and "plain" in by_name:
        inf, plain = by_name["infused"], by_name["plain"]
        print(
            f"identity_match infused={inf['identity']:.3f} plain={plain['identity']:.3f} "
            f"prompt_adherence infused={inf['adherence']:.3f} plain={plain['adherence']:.3f}"
        )


if __name__ == "__main__":
    main()
