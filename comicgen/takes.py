"""Takes: several seeds of one panel side by side, and picking one.

``render --takes N --panel ID`` paints N versions of a panel (through the normal
painter and panel cache, so every take is cached and reused) and writes a contact
sheet into ``build/<story>/takes/``::

    takes/<panel>.html       the takes side by side, numbered
    takes/<panel>.png        the same as one image
    takes/<panel>-1.png ...  each take
    takes/<panel>.json       story, panel and each take's seed (what ``pick`` reads)

Take 1 is always the panel as it is now (its current seed); the others use seeds
derived from the story seed and the panel id, so asking again gives the same takes.
``pick ID K`` writes take K's seed into the story with :func:`set_panel_seed`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from comicgen.errors import ComicgenError
from comicgen.fsutil import atomic_save_image, atomic_write_bytes, atomic_write_text, safe_filename
from comicgen.jobs import PanelJob, Plan, panel_seed, select
from comicgen.painting import Reporter, SilentReporter
from comicgen.story_edit import set_panel_seed
from comicgen.workspace import Workspace

MAX_TAKES = 16


@dataclass
class Take:
    number: int  # 1-based
    seed: int
    key: str
    image: Path | None = None  # the take's PNG in takes/


@dataclass
class TakesResult:
    story: str
    panel: str
    takes: list[Take]
    html: Path
    sheet: Path
    painted: int = 0
    reused: int = 0
    warnings: list[str] = field(default_factory=list)


def take_seeds(current: int, base: int, panel_id: str, count: int) -> list[int]:
    """``count`` seeds: the panel's current one first, then derived ones (never repeated)."""
    seeds = [current]
    k = 1
    while len(seeds) < count:
        seed = panel_seed(base, f"{panel_id}#take{k}")
        if seed not in seeds:
            seeds.append(seed)
        k += 1
    return seeds


def take_jobs(the_plan: Plan, panel_id: str, count: int) -> list[PanelJob]:
    """One job per take of panel ``panel_id`` (its plan's job with another seed)."""
    if not 1 <= count <= MAX_TAKES:
        raise ComicgenError(f"--takes {count}: ask for 1 to {MAX_TAKES} takes")
    (job,) = select(the_plan, None, panel_id)
    jobs = []
    for seed in take_seeds(job.seed, the_plan.render.seed, job.id, count):
        take = replace(job, seed=seed)
        take.key = take.compute_key()
        jobs.append(take)
    return jobs


def takes_dir(ws: Workspace, the_plan: Plan) -> Path:
    return ws.build_dir / safe_filename(the_plan.loaded.name, "story") / "takes"


def render_takes(
    ws: Workspace,
    story_path: Path,
    panel_id: str,
    count: int,
    *,
    library,
    reporter: Reporter | None = None,
    model: dict | None = None,
    allow_outside: bool = False,
    batch_size: int | None = 1,
) -> TakesResult:
    """Paint ``count`` takes of one panel (cached ones reused) and write the contact sheet."""
    from comicgen.jobs import plan
    from comicgen.painting import paint_jobs

    reporter = reporter or SilentReporter()
    the_plan = plan(ws, story_path, library, allow_outside=allow_outside)
    for warning in the_plan.warnings:
        reporter.message(f"warning: {warning}")
    jobs = take_jobs(the_plan, panel_id, count)
    missing = [j for j in jobs if library.cache_get(j.key) is None]
    reporter.planned(len(jobs), len(missing))
    painted, reused = paint_jobs(
        ws, the_plan, jobs, library, reporter, model=model, batch_size=batch_size
    )
    result = write_sheet(ws, the_plan, jobs, library)
    result.painted, result.reused = painted, reused
    return result


def write_sheet(ws: Workspace, the_plan: Plan, jobs: list[PanelJob], library) -> TakesResult:
    """Copy the (painted) takes into takes/ and write the HTML and PNG contact sheets."""
    from PIL import Image

    from comicgen.publish.html import environment

    folder = takes_dir(ws, the_plan)
    stem = safe_filename(jobs[0].id.replace(".", "-"), "panel")
    takes: list[Take] = []
    images = []
    for number, job in enumerate(jobs, start=1):
        cached = library.cache_get(job.key)
        if cached is None:
            raise ComicgenError(f"take {number} of panel {job.id} is not painted")
        target = folder / f"{stem}-{number}.png"
        atomic_write_bytes(target, Path(cached).read_bytes())
        takes.append(Take(number, job.seed, job.key, target))
        images.append(Image.open(target).convert("RGB"))

    story_file = the_plan.loaded.path
    record = {
        "story": ws.relative(story_file),
        "panel": jobs[0].id,
        "takes": [{"take": t.number, "seed": t.seed, "key": t.key} for t in takes],
    }
    atomic_write_text(folder / f"{stem}.json", json.dumps(record, indent=2) + "\n")

    sheet = folder / f"{stem}.png"
    atomic_save_image(contact_sheet(images, [f"{t.number} · seed {t.seed}" for t in takes]), sheet)

    templates = [ws.templates_dir] if ws.templates_dir.is_dir() else []
    text = (
        environment(templates)
        .get_template("takes.html")
        .render(
            title=the_plan.loaded.story.title,
            panel=jobs[0].id,
            prompt=jobs[0].prompt,
            story=ws.relative(story_file),
            takes=[{"number": t.number, "seed": t.seed, "src": t.image.name} for t in takes],
            width=jobs[0].width,
            height=jobs[0].height,
        )
    )
    html = folder / f"{stem}.html"
    atomic_write_text(html, text)
    return TakesResult(the_plan.loaded.name, jobs[0].id, takes, html, sheet)


def contact_sheet(images, labels: list[str], gap: int = 8, label_height: int = 20):
    """The images in one row (wrapping after four), each with its label below."""
    from PIL import Image, ImageDraw

    from comicgen.lettering import FONT_DIR, FONT_FILES

    w = max(i.width for i in images)
    h = max(i.height for i in images)
    scale = max(1, 256 // max(w, h))  # tiny model panels: enlarge (nearest) to be seen
    w, h = w * scale, h * scale
    cols = min(4, len(images))
    rows = (len(images) + cols - 1) // cols
    sheet = Image.new(
        "RGB",
        (gap + cols * (w + gap), gap + rows * (h + label_height + gap)),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(sheet)
    try:
        from PIL import ImageFont

        font = ImageFont.truetype(str(FONT_DIR / FONT_FILES[False]), 14)
    except OSError:  # pragma: no cover - the font ships with comicgen
        font = None
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        x = gap + (i % cols) * (w + gap)
        y = gap + (i // cols) * (h + label_height + gap)
        if scale > 1:
            image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
        sheet.paste(image, (x, y))
        draw.text((x, y + h + 2), label, fill=(0, 0, 0), font=font)
    return sheet


# -- picking -------------------------------------------------------------------------------


def load_takes(ws: Workspace, panel_id: str, story: Path | None = None) -> tuple[Path, dict]:
    """The takes record of ``panel_id`` (of ``story``, or the newest one written)."""
    from comicgen.jobs import resolve_story_path

    stem = safe_filename(panel_id.replace(".", "-"), "panel")
    if story is not None:
        path = resolve_story_path(ws, story)
        candidates = [ws.build_dir / safe_filename(path.stem, "story") / "takes" / f"{stem}.json"]
    else:
        candidates = sorted(
            ws.build_dir.glob(f"*/takes/{stem}.json"), key=lambda p: p.stat().st_mtime
        )[::-1]
    for candidate in candidates:
        if candidate.is_file():
            try:
                record = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if record.get("panel") == panel_id:
                return candidate, record
    raise ComicgenError(
        f"no takes of panel {panel_id}" + (f" of {story}" if story else ""),
        hint=f"paint some first: comicgen render STORY --panel {panel_id} --takes 4",
    )


def pick(ws: Workspace, panel_id: str, number: int, story: Path | None = None):
    """Write take ``number``'s seed into the story; returns (story path, seed)."""
    from comicgen.jobs import resolve_story_path

    _, record = load_takes(ws, panel_id, story)
    seeds = {t["take"]: t["seed"] for t in record.get("takes", [])}
    if number not in seeds:
        raise ComicgenError(
            f"panel {panel_id} has no take {number}",
            hint=f"takes: {', '.join(map(str, sorted(seeds)))}",
        )
    path = resolve_story_path(ws, Path(record["story"])) if story is None else None
    path = path or resolve_story_path(ws, story)
    set_panel_seed(path, panel_id, int(seeds[number]))
    return path, int(seeds[number])
