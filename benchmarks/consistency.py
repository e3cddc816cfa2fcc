"""Character consistency, second version: does Infusion keep a character *and* let it act?

Every panel shows a toy-world character whose identity the prompt does **not** state: the
prompt says "a character looking ⟨expression⟩ [facing ⟨side⟩] ⟨position⟩, ⟨shot⟩, ⟨sky⟩
sky, ⟨ground⟩, ⟨prop⟩", so its shape, colour, hat, pattern and scarf can only come from
its reference sheet. The references are views of the sheet with **other** expressions
(and facings) than the panel asks, so a method that pastes its sheet is caught: it keeps
the identity but loses the expression. Facing is asked only when the toy world's
captions name it (``world.character_clause`` says something for ``look``); until then
it is not scored. The toy world's reader reads each panel back. Scores per method:

- identity: pattern, colour, shape, hat (mean of the four = ``identity``), all four at
  once (``all4``), scarf for information;
- character adherence: expression, facing, position (the character is read at the asked
  place) and size (its figure's width fits the shot's) — ``character`` is their mean;
- scene adherence: sky, ground, prop (``scene``);
- story consistency (``story``): one character over a 6-panel story (different
  expressions, places, shots and scenes): the fraction of panel pairs whose read
  characters agree on every identity attribute (shape, colour, hat, pattern, scarf);
- two and three characters per panel (three: wide shots), each side against its own sheet.

Seeds: a tuning split (what defaults are chosen on) and a report split (what is
published); ``--split`` picks one. Methods: plain, img2img from the first reference at
0.5 / 0.75, ``mode: seed``, today's defaults (``infused``: infusion, then the face pass
as the render runs it — the model's face model, its sheet-trained U-Net on each crop with
the sheet; without ``--unet``), ``infused-no-faces`` (infusion alone), attention-level
infusion (alone and with the output level) and variants; the ``truth`` row scores the
toy world's own render of each prompt (the reader's ceiling), ``truth-vae`` that render
after the model's VAE (encoded and decoded: the ceiling of anything the model paints).

    python benchmarks/consistency.py --split report              # the published table
    python benchmarks/consistency.py --panels 4 --steps 8 --methods plain,infused

The last line is ``identity_match infused=X plain=Y character_adherence infused=A plain=B
prompt_adherence infused=Z plain=W`` (prompt adherence: the scene's sky, ground, prop).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from comicgen.faces import FACE_STRENGTH  # noqa: E402 - after the path set-up

MODEL = ROOT / "comicgen" / "bundled" / "toyworld"
IDENTITY = ("pattern", "color", "shape", "hat")
STORY_ATTRS = ("shape", "color", "hat", "pattern", "scarf")
CHARACTER = ("expression", "facing", "position", "size")
SCENE = ("sky", "ground", "prop")
SPLITS = {"tune": 2024, "report": 7001}  # base seeds: defaults are chosen on "tune" only
REFERENCES = 3  # reference views per character
SIZE_RANGE = (0.65, 1.25)  # figure width / the shot's body size that counts as the right size


@dataclass
class Panel:
    seed: int
    prompt: str
    characters: list  # world.Character as asked (expression, look), one to three
    positions: list[str]
    shot: str
    sky: str
    ground: str
    prop: str
    references: list = field(default_factory=list)  # per character: its reference views
    story: int = -1  # story index (story panels only)


def facing_phrase(look: int) -> str | None:
    """What the toy world's captions say for a facing (``look``), or None when they do not
    name it (then the benchmark neither asks nor scores facing)."""
    from toyworld import world as W

    base = W.character_clause(W.Character(), None)
    ch = replace(W.Character(), look=look)
    other = W.character_clause(ch, None)
    if other == base:
        return None
    # the words of the clause that say it: "facing left" (before 2026-12-04 the benchmark
    # asked only the words that differ from looking ahead, "left", which no caption says)
    phrase = f"facing {ch.facing}"
    return phrase if phrase in other else None


def facing_supported() -> bool:
    return facing_phrase(-1) is not None and facing_phrase(1) is not None


def reference_views(ch, rng: random.Random) -> list:
    """``REFERENCES`` sheet views of ``ch`` whose expression (and facing, when asked)
    differ from the asked ones."""
    from toyworld import world as W

    views = [v.characters[0] for _, v in W.sheet_views(ch)]
    others = [
        v for v in views if v.expression != ch.expression and (ch.look == 0 or v.look != ch.look)
    ]
    rng.shuffle(others)
    return others[:REFERENCES]


def _clause(ch, position: str, facing: bool) -> str:
    from toyworld import world as W

    words = [f"a character looking {ch.expression}"]
    if facing and ch.look != 0:
        words.append(facing_phrase(ch.look))
    words.append(W.POSITION_PHRASE[position])
    return " ".join(words)


def make_panel(rng: random.Random, seed: int, count: int, index: int, ch=None) -> Panel:
    from toyworld import world as W

    facing = facing_supported()
    if count == 3:
        shot, positions = "wide", ["left", "center", "right"]
    elif count == 2:
        shot, positions = W.SHOTS[index % 2], ["left", "right"]
    else:
        shot, positions = W.SHOTS[index % 2], [W.POSITIONS[(index // 2) % 3]]
    chars = []
    for _ in range(count):
        base = ch if ch is not None else W.sample_character(rng)
        while ch is None and any(c.color == base.color for c in chars):  # tell them apart
            base = W.sample_character(rng)
        look = rng.choice((-1, 1)) if facing else 0
        chars.append(replace(base, expression=rng.choice(W.EXPRESSIONS), look=look))
    sky = rng.choice(list(W.SKIES))
    ground = rng.choice(list(W.GROUNDS))
    prop = "none" if count == 3 else rng.choice(W.PROPS)  # three fill a wide shot
    clauses = [_clause(c, p, facing) for c, p in zip(chars, positions, strict=True)]
    clauses += [W.SHOT_PHRASE[shot], f"{sky} sky", ground, W.PROP_PHRASE[prop]]
    refs = [reference_views(c, rng) for c in chars]
    return Panel(seed, ", ".join(clauses), chars, positions, shot, sky, ground, prop, refs)


def make_panels(n: int, count: int, split: str) -> list[Panel]:
    base = SPLITS[split]
    out = []
    for i in range(n):
        rng = random.Random(f"consistency2:{base}:{count}:{i}")
        out.append(make_panel(rng, base + 1000 * count + i, count, i))
    return out


def make_stories(n: int, split: str, length: int = 6) -> list[Panel]:
    """``n`` stories of ``length`` panels, one character each (panels of a story differ in
    expression, facing, place, shot and scene; their references are the same sheet)."""
    from toyworld import world as W

    base = SPLITS[split]
    out = []
    for s in range(n):
        rng = random.Random(f"consistency2-story:{base}:{s}")
        ch = W.sample_character(rng)
        refs = reference_views(replace(ch, expression="happy", look=0), rng)
        for i in range(length):
            panel = make_panel(rng, base + 50_000 + 100 * s + i, 1, i + s, ch=ch)
            # the story's sheet, whatever the panel asks (so a pasted face shows)
            panel.references = [refs]
            panel.story = s
            out.append(panel)
    return out


def toy_box(shot: str, positions: list[str], index: int) -> tuple[float, float, float, float]:
    """Where the toy world draws a character (body and hat), as fractions of the panel."""
    from toyworld import world as W

    cx, s = W.layout(shot, tuple(positions))[index]
    feet = W.FEET[shot]
    top = feet - s * (1.0 + W.HAT_HEIGHT)
    x0, x1 = (cx - 0.55 * s) / W.SIZE, (cx + 0.55 * s) / W.SIZE
    return (max(0.0, x0), max(0.0, top / W.SIZE), min(1.0, x1), min(1.0, feet / W.SIZE))


_VIEWS: dict = {}


def view_image(view):
    from toyworld import world as W

    if view not in _VIEWS:
        scene = W.Scene(kind="sheet", characters=(view,), positions=("center",))
        _VIEWS[view] = W.render(scene, W.SIZE)
    return _VIEWS[view]


def character_refs(panel: Panel, placement: str):
    from comicgen.infusion import CharacterRefs
    from toyworld import world as W

    refs = []
    for i, (ch, pos) in enumerate(zip(panel.characters, panel.positions, strict=True)):
        views = panel.references[i]
        box = toy_box(panel.shot, panel.positions, i) if placement == "box" else None
        if box is None and len(panel.characters) == 3:
            box = toy_box(panel.shot, panel.positions, i)  # position_box has no 3-wide slots
        refs.append(
            CharacterRefs(
                name=f"c{i}",
                images=[view_image(v) for v in views],
                masks=None,
                description=W.describe(ch, color=False, shape=False, hat=False),
                position=pos,
                box=box,
                key=f"{ch.identity()}:{[(v.expression, v.look) for v in views]}",
            )
        )
    return refs


def truth_image(panel: Panel):
    from toyworld import world as W

    slots = W.prop_slots(panel.shot, tuple(panel.positions)) or [32.0]
    scene = W.Scene(
        characters=tuple(panel.characters),
        positions=tuple(panel.positions),
        sky=panel.sky,
        ground=panel.ground,
        prop=panel.prop,
        prop_x=slots[0],
        shot=panel.shot,
    )
    return W.render(scene)


def score(image, panel: Panel, facing: bool) -> tuple[dict[str, list[float]], list]:
    """Scores of one panel, and the identity tuples read (for story consistency)."""
    from toyworld import reader
    from toyworld import world as W

    reading = reader.read(image)
    out: dict[str, list[float]] = {}
    for k in SCENE:
        out.setdefault(k, []).append(float(getattr(reading, k) == getattr(panel, k)))
    count = len(panel.characters)
    if count == 3:
        slots = reader.read_at(image, panel.shot, tuple(panel.positions))
        found = [got for got, width in slots]
    else:
        found = [reading.character(p) for p in panel.positions]
    identities = []
    for i, (ch, pos) in enumerate(zip(panel.characters, panel.positions, strict=True)):
        got = found[i]
        at_place = got is not None
        if got is None and count == 1 and reading.characters:
            got = reading.characters[0]  # one character, seen elsewhere: still read it
        side = f"{pos}:" if count > 1 else ""
        hits = []
        for k in (*IDENTITY, "scarf"):
            ok = got is not None and getattr(got, k) == getattr(ch, k)
            out.setdefault(side + k, []).append(float(ok))
            if k in IDENTITY:
                hits.append(ok)
        out.setdefault(side + "all4", []).append(float(all(hits)))
        identities.append(None if got is None else tuple(getattr(got, k) for k in STORY_ATTRS))
        expr = got is not None and got.expression == ch.expression
        out.setdefault(side + "expression", []).append(float(expr))
        if facing:
            look = got is not None and getattr(got, "facing", None) == W.FACINGS[ch.look + 1]
            out.setdefault(side + "facing", []).append(float(look))
        if count == 1:
            out.setdefault("position", []).append(float(at_place))
            ((_, width),) = reader.read_at(image, panel.shot, (pos,))
            body = W.layout(panel.shot, (pos,))[0][1]
            lo, hi = SIZE_RANGE
            out.setdefault("size", []).append(float(lo <= width / body <= hi))
    return out, identities


def story_consistency(identities: dict[int, list]) -> float:
    """Mean over stories of the fraction of panel pairs that agree on every identity
    attribute (a panel where no character was read agrees with none)."""
    rates = []
    for seen in identities.values():
        pairs = [(a, b) for i, a in enumerate(seen) for b in seen[i + 1 :]]
        if pairs:
            rates.append(sum(a is not None and a == b for a, b in pairs) / len(pairs))
    return sum(rates) / len(rates) if rates else float("nan")


@dataclass
class Method:
    name: str
    kind: str  # "plain", "img2img", "infusion", "truth", "truth-vae"
    strength: float = 0.0
    settings: dict | None = None
    placement: str = "position"  # "position" or "box" (the toy world's own layout)
    count: int = 1  # characters per panel
    story: bool = False  # also run the 6-panel stories
    # the face pass after painting (comicgen.faces): {"model": a face folder, relative to
    # the model or absolute, or "own"; "strength"; "paste": the window; "infusion":
    # settings to infuse the character's sheet into the crop, null for none, or absent
    # for what the render does (the face model's own settings, if it was trained so)}
    faces: dict | None = None


ATTENTION = {"levels": ["attention"], "attention": {"weight": 1.0}}
ATTENTION_OUT = {"levels": ["attention", "out"], "layers": {"down": [0.0], "mid": 0.0, "up": [0.0]}}


FACES = {"model": "auto", "strength": FACE_STRENGTH}  # the face pass as the render runs it
NO_SHEET = {**FACES, "infusion": None}  # the plain face U-Net on every crop, no sheet


def methods() -> list[Method]:
    """Every method of the table (names are what --methods selects)."""
    seed_layers = {"down": [0.3], "mid": 0.3, "up": [0.3, 0.3, 0.3], "out": 0.0}
    out_only = {"down": [0.0], "mid": 0.0, "up": [0.0], "out": 1.0}
    return [
        Method("truth", "truth", story=True),
        Method("truth-vae", "truth-vae", story=True),
        Method("plain", "plain", story=True),
        Method("img2img-0.5", "img2img", strength=0.5),
        Method("img2img-0.75", "img2img", strength=0.75),
        Method("seed-0.3", "infusion", settings={"mode": "seed", "layers": seed_layers}),
        # today's defaults: infusion, then the face pass as the render runs it
        Method("infused", "infusion", settings={}, story=True, faces=FACES),
        Method("infused-no-faces", "infusion", settings={}, story=True),
        Method("out-only", "infusion", settings={"layers": out_only}),
        Method("out-0.5", "infusion", settings={"layers": {**out_only, "out": 0.5}}),
        Method("attention", "infusion", settings=ATTENTION, story=True),
        Method("attention-2x", "infusion", settings={**ATTENTION, "attention": {"weight": 2.0}}),
        Method("attention+out", "infusion", settings=ATTENTION_OUT),
        Method("infused+plain-faces", "infusion", settings={}, story=True, faces=NO_SHEET),
        Method("plain-2", "plain", count=2),
        Method("regional-2", "infusion", settings={}, count=2, faces=FACES),
        Method("regional-2-no-faces", "infusion", settings={}, count=2),
        Method("attention-2", "infusion", settings=ATTENTION, count=2),
        Method("plain-3", "plain", count=3),
        Method("regional-3", "infusion", settings={}, count=3, faces=FACES),
        Method("regional-3-no-faces", "infusion", settings={}, count=3),
        Method("attention-3", "infusion", settings=ATTENTION, count=3),
    ]


def paint(pipe, img2img, method: Method, panel: Panel, args, unets, model):
    """One panel of ``method``; ``unets``: the U-Net in use and its feature cache
    (comicgen.infusion.unet.UnetSwap), ``model``: the model's ModelInfo (its infusion
    U-Net and the settings that go with it), None with --unet."""
    import torch

    from comicgen.infusion import FeatureCache, infused
    from comicgen.models import resolve_infusion_unet
    from comicgen.settings import InfusionSettings, panel_infusion

    size = 64
    kw = dict(height=size, width=size, num_inference_steps=args.steps, guidance_scale=args.guidance)
    rescale = {"guidance_rescale": args.guidance_rescale}
    generator = torch.Generator("cpu").manual_seed(panel.seed)
    if method.kind == "truth":
        return truth_image(panel)
    if method.kind == "truth-vae":
        return vae_round_trip(pipe, truth_image(panel))
    if method.kind != "infusion":
        unets.use(None)  # the model's own U-Net
    if method.kind == "plain":
        return pipe(prompt=panel.prompt, generator=generator, **kw, **rescale).images[0]
    if method.kind == "img2img":
        return img2img(
            prompt=panel.prompt,
            image=view_image(panel.references[0][0]),
            strength=method.strength,
            generator=generator,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            **rescale,
        ).images[0]
    # as comicgen render does: the method's settings on top of what the model recommends
    # for its infusion U-Net (comicgen.json), when unet stays "auto"
    recommended = model.infusion if model is not None else {}
    settings = panel_infusion(recommended, InfusionSettings(**method.settings))
    refs = character_refs(panel, method.placement)
    # [infusion] unet, as comicgen render: "auto" takes the model's infusion-trained U-Net
    # when it ships one (with --unet, the U-Net given is the model's: "auto" keeps it)
    folder = None
    if settings.weight > 0:  # weight 0 is a plain panel, painted by the own U-Net
        folder = resolve_infusion_unet(settings.unet, model, None)
    unets.use(folder)
    if unets.cache is None:
        unets.cache = FeatureCache(max_bytes=256 * 1024**2)
    with infused(pipe, refs, settings, seed=panel.seed, cache=unets.cache, **kw):
        return pipe(prompt=panel.prompt, generator=generator, **kw, **rescale).images[0]


def vae_round_trip(pipe, image):
    """``image`` encoded and decoded by ``pipe``'s VAE (toyworld.trainkit.round_trip:
    the posterior's mode, as the model card's VAE PSNR)."""
    import numpy as np
    from PIL import Image

    from toyworld.trainkit import round_trip

    pixels = np.asarray(image.convert("RGB")).transpose(2, 0, 1)[None]
    return Image.fromarray(round_trip(pipe.vae, pixels)[0].permute(1, 2, 0).numpy())


_FACE_PAINTERS: dict = {}


def face_pass(pipe, method: Method, panel: Panel, image, args, model):
    """``image`` after ``method``'s face pass: each character's face repainted from its
    clause of the prompt (with its sheet infused when the method says so)."""
    from comicgen.faces import Face, FacePainter
    from comicgen.infusion import position_box
    from comicgen.settings import InfusionSettings, panel_infusion

    spec = method.faces
    name = spec.get("model", "auto")
    if name == "auto":  # the face model the model ships, as [render] faces = "auto"
        if model is None or model.faces is None:
            return image
        folder = model.faces
    else:
        folder = None if name == "own" else Path(args.model) / name
    if str(folder) not in _FACE_PAINTERS:
        _FACE_PAINTERS[str(folder)] = FacePainter(pipe, folder)
    painter = _FACE_PAINTERS[str(folder)]
    facing = facing_supported()
    refs = character_refs(panel, method.placement)
    faces = [
        Face(_clause(ch, pos, facing), ref.box or position_box(ref.position))
        for ch, pos, ref in zip(panel.characters, panel.positions, refs, strict=True)
    ]
    infusion = painter.infusion  # as the render runs it: a sheet-trained face model's own
    if spec.get("infusion") is not None:
        recommended = model.infusion if model is not None else {}
        infusion = panel_infusion(recommended, InfusionSettings(**spec["infusion"]))
    elif "infusion" in spec:  # "infusion": null, no sheet in the crops
        infusion = None
    return painter.repaint(
        image,
        faces,
        seed=panel.seed,
        steps=args.steps,
        guidance=args.guidance,
        strength=spec.get("strength", FACE_STRENGTH),
        refs=refs if infusion else None,
        infusion=infusion,
        paste=tuple(spec["paste"]) if "paste" in spec else None,
    )


def run_method(pipe, method: Method, panels: list[Panel], stories: list[Panel], args, unets, model):
    img2img = None
    if method.kind == "img2img":
        from diffusers import StableDiffusionImg2ImgPipeline

        img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
        img2img.set_progress_bar_config(disable=True)

    def painted(panel: Panel):
        image = paint(pipe, img2img, method, panel, args, unets, model)
        if method.faces:
            image = face_pass(pipe, method, panel, image, args, model)
        if args.save:
            folder = Path(args.save) / method.name
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{panel.seed}.png")
        return image

    return score_method(method, panels, stories, painted)


def score_method(method: Method, panels: list[Panel], stories: list[Panel], image_of) -> dict:
    """Every score of ``method`` over its panels; ``image_of(panel)`` paints (or loads) a
    panel's image, None to skip it."""
    facing = facing_supported()
    totals: dict[str, list[float]] = {}
    start = time.perf_counter()
    todo = list(panels) + (list(stories) if method.story else [])
    story_ids: dict[int, list] = {}
    for panel in todo:
        image = image_of(panel)
        if image is None:
            continue
        scores, identities = score(image, panel, facing)
        if panel.story >= 0:
            story_ids.setdefault(panel.story, []).append(identities[0])
            continue
        for k, v in scores.items():
            totals.setdefault(k, []).extend(v)
    result = {k: sum(v) / len(v) for k, v in totals.items()}
    result["seconds"] = (time.perf_counter() - start) / max(1, len(todo))
    result["story"] = story_consistency(story_ids) if story_ids else float("nan")
    sides = [""] if method.count == 1 else [f"{p}:" for p in panels[0].positions]
    for side in sides:
        result[side + "identity"] = sum(result[side + k] for k in IDENTITY) / len(IDENTITY)
        asked = [k for k in CHARACTER if side + k in result]
        result[side + "character"] = sum(result[side + k] for k in asked) / len(asked)
    result["scene"] = sum(result[k] for k in SCENE) / len(SCENE)
    if method.count > 1:
        for k in ("identity", "all4", "character"):
            result[k] = sum(result[s + k] for s in sides) / len(sides)
    return result


def _fmt(value) -> str:
    return "n/a" if value != value else f"{value:.3f}"  # NaN: not measured


def _row(name: str, result: dict, cols) -> str:
    return f"| {name} | " + " | ".join(_fmt(result.get(c, float("nan"))) for c in cols) + " |"


def table(rows: list[tuple[Method, dict]], facing: bool) -> str:
    """Markdown tables (one, two and three characters)."""
    lines = []
    single = [(m, r) for m, r in rows if m.count == 1]
    char_cols = [c for c in CHARACTER if facing or c != "facing"]
    if single:
        cols = (
            "identity", *IDENTITY, "all4", "scarf",
            "character", *char_cols,
            "scene", *SCENE, "story", "seconds",
        )  # fmt: skip
        lines.append("| method | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for m, r in single:
            lines.append(_row(m.name, r, cols))
    for count in (2, 3):
        group = [(m, r) for m, r in rows if m.count == count]
        if not group:
            continue
        sides = ["left", "right"] if count == 2 else ["left", "center", "right"]
        cols = [f"{s}:identity" for s in sides] + [f"{s}:all4" for s in sides]
        cols += ["identity", "character", "scene", "seconds"]
        lines.append("")
        lines.append(f"{count} characters (each side against its own sheet):")
        lines.append("")
        lines.append("| method | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for m, r in group:
            lines.append(_row(m.name, r, cols))
    return "\n".join(lines)


def plot(rows: list[tuple[Method, dict]], path: Path) -> None:
    """The frontier: identity (y) against character adherence (x), one dot per method."""
    from PIL import Image, ImageDraw

    single = [(m, r) for m, r in rows if m.count == 1 and not m.kind.startswith("truth")]
    size, pad = 520, 60
    img = Image.new("RGB", (size + pad * 2, size + pad * 2), "white")
    d = ImageDraw.Draw(img)

    def xy(x: float, y: float) -> tuple[float, float]:
        return pad + x * size, pad + (1 - y) * size

    d.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    for t in range(11):
        v = t / 10
        d.line([xy(v, 0), (xy(v, 0)[0], xy(v, 0)[1] + 5)], fill="black")
        d.text((xy(v, 0)[0] - 8, xy(v, 0)[1] + 8), f"{v:.1f}", fill="black")
        d.line([xy(0, v), (xy(0, v)[0] - 5, xy(0, v)[1])], fill="black")
        d.text((xy(0, v)[0] - 30, xy(0, v)[1] - 5), f"{v:.1f}", fill="black")
    d.text((pad + size / 2 - 60, pad + size + 30), "character adherence", fill="black")
    d.text((10, 20), "identity (mean of pattern, colour, shape, hat)", fill="black")
    # the frontier: methods no other method beats on both axes
    pts = sorted(((r["character"], r["identity"], m.name) for m, r in single), reverse=True)
    front, best = [], -1.0
    for x, y, _ in pts:
        if y > best:
            front.append((x, y))
            best = y
    if len(front) > 1:
        d.line([xy(x, y) for x, y in sorted(front)], fill=(200, 60, 60), width=2)
    placed: list[tuple[float, float, float, float]] = []  # label boxes drawn so far
    for x, y, name in pts:
        cx, cy = xy(x, y)
        d.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=(40, 80, 200))
        # methods close together: each label goes to the first free slot beside its
        # dot, further down or up, with a leader line when it moved
        for dy in (-6, 6, -18, 18, -30, 30, -42, 42, -54, 54, -66, 66):
            box = d.textbbox((cx + 8, cy + dy), name)
            if not any(
                box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed
            ):
                break
        placed.append(box)
        if abs(dy) > 6:
            d.line([(cx + 3, cy), (box[0] - 1, (box[1] + box[3]) / 2)], fill=(150, 150, 150))
        d.text((cx + 8, cy + dy), name, fill="black")
    # the targets: identity >= 0.90 with character adherence within 0.05 of plain
    plain = {m.name: r for m, r in single}.get("plain")
    if plain is not None:
        x0, y0 = xy(plain["character"] - 0.05, 0.9)
        d.rectangle([x0, xy(0, 1)[1], xy(1, 0)[0], y0], outline=(60, 160, 60))
        d.text((x0 + 4, xy(0, 1)[1] + 4), "target", fill=(60, 160, 60))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    img.save(tmp)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--panels", type=int, default=24, help="panels per method (default 24)")
    ap.add_argument(
        "--stories", type=int, default=None, help="6-panel stories (default: panels / 6)"
    )
    ap.add_argument("--split", choices=sorted(SPLITS), default="report")
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
    ap.add_argument("--unet", type=Path, help="a U-Net folder to use instead of the model's")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--save", type=Path, help="write every panel under this folder")
    ap.add_argument("--json", type=Path, help="write every method's scores here")
    ap.add_argument("--plot", type=Path, help="write the frontier plot (PNG) here")
    ap.add_argument(
        "--rescore",
        type=Path,
        help="score the panels an earlier run wrote with --save (this folder: one folder per "
        "method), running no model; pass the same --split, --panels and --stories",
    )
    ap.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        help="print the table (and --plot) from earlier runs' --json files, running nothing",
    )
    ap.add_argument(
        "--extra",
        default="",
        help='more infusion methods as JSON (or @file.json), e.g. \'{"w2": {"weight": 2.0}}\' '
        '(keys "count": 2 or 3, "story": true and "placement": "box" pick the panels; '
        '"faces": {"model": "faces", "strength": 0.75, "infusion": {...}} adds the face pass)',
    )
    args = ap.parse_args(argv)
    if args.from_json:
        known = {m.name: m for m in methods()}
        rows = []
        for path in args.from_json:
            for name, result in json.loads(path.read_text()).items():
                method = known.get(name) or Method(name, "infusion", {}, count=1)
                rows.append((method, result))
        order = list(known)
        rows.sort(key=lambda row: order.index(row[0].name) if row[0].name in known else 99)
        report(rows, args)
        return
    if args.rescore:
        rows = rescore(args)
        if args.json:
            args.json.write_text(json.dumps({m.name: r for m, r in rows}, indent=1, sort_keys=True))
        report(rows, args)
        return

    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    torch.set_num_threads(args.threads)
    pipe = StableDiffusionPipeline.from_pretrained(args.model)
    if args.unet:
        pipe.unet = UNet2DConditionModel.from_pretrained(args.unet)
    pipe = pipe.to(args.device)
    pipe.set_progress_bar_config(disable=True)
    if args.guidance_rescale is None:
        from comicgen.painter import recommended_guidance_rescale

        args.guidance_rescale = recommended_guidance_rescale(pipe.scheduler.config)
    chosen = [m for m in methods() if not args.methods or m.name in args.methods.split(",")]
    if args.extra:
        text = Path(args.extra[1:]).read_text() if args.extra.startswith("@") else args.extra
        for name, spec in json.loads(text).items():
            spec = dict(spec)
            count, story = spec.pop("count", 1), spec.pop("story", False)
            placement = spec.pop("placement", "position")
            faces = spec.pop("faces", None)
            chosen.append(
                Method(
                    name,
                    "infusion",
                    settings=spec,
                    placement=placement,
                    count=count,
                    story=story,
                    faces=faces,
                )
            )
    if not chosen:
        ap.error(f"no such method; choose from {', '.join(m.name for m in methods())}")
    facing = facing_supported()
    panels = {c: make_panels(args.panels, c, args.split) for c in (1, 2, 3)}
    n_stories = args.stories if args.stories is not None else max(1, args.panels // 6)
    stories = make_stories(n_stories, args.split)
    from comicgen.models import inspect_model

    # with --unet, the U-Net given is the model's: no infusion U-Net, no recommendations
    model = None if args.unet else inspect_model(str(args.model))
    from comicgen.infusion.unet import UnetSwap

    unets = UnetSwap(pipe)
    rows = []
    begin = time.perf_counter()
    for method in chosen:
        result = run_method(pipe, method, panels[method.count], stories, args, unets, model)
        rows.append((method, result))
        keys = ("identity", "all4", "character", "scene", "story")
        summary = " ".join(f"{k}={_fmt(result[k])}" for k in keys)
        print(f"{method.name:<14} {summary} ({result['seconds']:.2f} s/panel)", flush=True)
    print(
        f"\n{args.split} split, {args.panels} panels per method, {n_stories} stories of 6, "
        f"{args.steps} steps, guidance {args.guidance} (rescale {args.guidance_rescale}), "
        f"facing {'asked' if facing else 'not captioned by this toy world: not asked'}, "
        f"{time.perf_counter() - begin:.0f} s in all"
    )
    if args.json:
        data = {m.name: r for m, r in rows}
        args.json.write_text(json.dumps(data, indent=1, sort_keys=True))
    report(rows, args)


def rescore(args) -> list[tuple[Method, dict]]:
    from PIL import Image

    known = {m.name: m for m in methods()}
    n_stories = args.stories if args.stories is not None else max(1, args.panels // 6)
    stories = make_stories(n_stories, args.split)
    rows = []
    for folder in sorted(p for p in args.rescore.iterdir() if p.is_dir()):
        method = known.get(folder.name)
        if method is None:
            continue

        def load(panel: Panel, folder=folder):
            path = folder / f"{panel.seed}.png"
            return Image.open(path).convert("RGB") if path.is_file() else None

        panels = make_panels(args.panels, method.count, args.split)
        result = score_method(method, panels, stories, load)
        result["seconds"] = float("nan")
        rows.append((method, result))
    order = list(known)
    return sorted(rows, key=lambda row: order.index(row[0].name))


def report(rows: list[tuple[Method, dict]], args) -> None:
    """The tables, the plot (``--plot``) and the last line."""
    facing = any("facing" in r for _, r in rows)
    print()
    print(table(rows, facing))
    if args.plot:
        plot(rows, args.plot)
    by_name = {m.name: r for m, r in rows}
    if "infused" in by_name and "plain" in by_name:
        inf, plain = by_name["infused"], by_name["plain"]
        print(
            f"identity_match infused={inf['identity']:.3f} plain={plain['identity']:.3f} "
            f"character_adherence infused={inf['character']:.3f} "
            f"plain={plain['character']:.3f} "
            f"prompt_adherence infused={inf['scene']:.3f} plain={plain['scene']:.3f}"
        )


if __name__ == "__main__":
    main()
