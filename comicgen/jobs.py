"""Story → panel jobs: what each panel is, and the cache key of its pixels.

``plan`` turns a validated story into one :class:`PanelJob` per panel, each with a
cache key made of everything that affects its pixels; ``select`` picks the jobs a
``--pages``/``--panel`` choice asks for. Nothing is painted here (see
:mod:`comicgen.painting`).
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from comicgen.adapters import AdapterPlan, key_data
from comicgen.errors import ComicgenError
from comicgen.faces import FACE_STRENGTH, PASTE
from comicgen.layout import SHAPE_ASPECT, check_layout, page_frames, shape_aspect
from comicgen.settings import (
    InfusionSettings,
    PageSettings,
    RenderSettings,
    merge,
    panel_infusion,
)
from comicgen.story import LoadedStory, check_story, expand_prompt, load_story, placeholders
from comicgen.workspace import Workspace

# Where a character at a position stands in the panel, as (x, y) fractions: used for
# balloon tails and the crop's centre of interest.
POSITION_ANCHORS = {"left": (0.27, 0.6), "center": (0.5, 0.6), "right": (0.73, 0.6)}


@dataclass
class CharacterSpec:
    name: str
    description: str
    image_shas: list[str]
    strength: float = 1.0
    position: str | None = None
    box: tuple[float, float, float, float] | None = None

    @property
    def anchor(self) -> tuple[float, float] | None:
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            return ((x0 + x1) / 2, (y0 + y1) / 2)
        return POSITION_ANCHORS.get(self.position or "")


@dataclass
class PanelJob:
    page: int
    index: int
    id: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    scheduler: str
    model: str  # model fingerprint
    guidance_rescale: float | None = None  # None: the model's recommendation
    characters: list[CharacterSpec] = field(default_factory=list)
    infusion: InfusionSettings = field(default_factory=InfusionSettings)
    loras: tuple = ()  # adapters.LoraUse, sorted
    embeddings: tuple = ()  # adapters.EmbeddingUse whose token is in the prompt
    infusion_unet: str = ""  # the U-Net folder that paints it ([infusion] unet); "": own
    infusion_unet_id: str = ""  # that folder's fingerprint (in the key)
    faces: tuple = ()  # comicgen.faces.Face of each character the face pass repaints
    face_model: str = ""  # the face model's folder ([render] faces); "": no face pass
    face_model_id: str = ""  # its fingerprint (in the key)
    face_strength: float = FACE_STRENGTH
    key: str = ""

    @property
    def file_name(self) -> str:
        return f"p{self.page:02d}-{self.index}.png"

    def compute_key(self) -> str:
        data = {
            "v": 1,
            "prompt": self.prompt,
            "negative": self.negative_prompt,
            "size": [self.width, self.height],
            "steps": self.steps,
            "guidance": self.guidance,
            "seed": self.seed,
            "scheduler": self.scheduler,
            "model": self.model,
        }
        if self.guidance_rescale is not None:
            data["guidance_rescale"] = self.guidance_rescale
        if self.characters and self.infusion.weight > 0:
            data["characters"] = [asdict(c) for c in self.characters]
            data["infusion"] = self.infusion.model_dump()
            if self.infusion_unet_id:
                data["infusion_unet"] = self.infusion_unet_id
        if self.faces and self.face_model_id:
            data["faces"] = [[f.clause, list(f.box)] for f in self.faces]
            # the plain crops' paste window too (the sheet-trained crops' is in the folder)
            data["face_model"] = [self.face_model_id, self.face_strength, list(PASTE)]
        data |= key_data(self.loras, self.embeddings)
        blob = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()


def panel_seed(base: int, panel_id: str) -> int:
    """A panel's own seed: from its id, so no panel depends on another."""
    return (base * 1_000_003 + zlib.crc32(panel_id.encode())) % 2**32


@dataclass
class Plan:
    loaded: LoadedStory
    jobs: list[PanelJob]
    model_name: str
    info: object  # painter.ModelInfo
    render: RenderSettings
    page: PageSettings
    warnings: list[str] = field(default_factory=list)
    upscale: str = "none"  # the upscaler spec ([render] upscale, or the model's default)


def resolve_story_path(ws: Workspace, story: Path, allow_outside: bool = False) -> Path:
    """The story file (as given, or relative to the workspace or its stories/ folder),
    refusing one outside the workspace unless allowed."""
    path = Path(story)
    candidates = [path]
    if not path.is_absolute():
        candidates += [ws.root / path, ws.stories_dir / path, ws.stories_dir / f"{path}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            path = candidate
            break
    else:
        raise ComicgenError(
            f"{story}: no such story file", hint="create one with 'comicgen new-story NAME'"
        )
    resolved = path.resolve()
    if not allow_outside and not resolved.is_relative_to(ws.root):
        raise ComicgenError(
            f"{story}: the story is outside the workspace {ws.root}",
            hint="move it into stories/, or pass --allow-outside",
        )
    return resolved


def plan(ws: Workspace, story_path: Path, library, *, allow_outside: bool = False) -> Plan:
    """Load and check a story and make one job per panel (no painting)."""
    from comicgen.models import inspect_model
    from comicgen.upscale import default_upscaler, resolve_upscaler

    path = resolve_story_path(ws, story_path, allow_outside)
    loaded = load_story(path, display=ws.relative(path))
    story = loaded.story
    if ws.characters_dir.is_dir():  # the workspace's example characters, when missing
        library.import_folder(ws.characters_dir, allow_outside=allow_outside)
    check_story(loaded, library.character_names(), check_layout)

    cfg = ws.config
    render = merge(cfg.render, story.settings)
    page = merge(cfg.page, story.page)
    model_name = story.model or cfg.model.name
    info = inspect_model(model_name, ws.root, cfg.model.model_copy(update={"name": model_name}))
    upscale = render.upscale or default_upscaler(model_name)
    resolve_upscaler(upscale, ws.root)  # a missing file fails now, not after painting
    warnings: list[str] = []

    characters = {c.name.lower(): c for c in library.list_characters()}
    descriptions = {}
    for key, ch in characters.items():
        cast = _cast(story, key)
        descriptions[key] = cast.description if cast and cast.description else ch.description

    layers = AdapterPlan(ws, loaded)
    unets: dict[str, tuple[str, str]] = {}  # [infusion] unet -> (folder, fingerprint)
    jobs: list[PanelJob] = []
    sizes = panel_sizes(story, page, info, render.size, warnings)
    for p, n, _page, panel in story.panels():
        rw, rh = sizes[(p, n)]
        specs: list[CharacterSpec] = []
        named = [(c.name, c) for c in panel.characters]
        listed = {c.name.lower() for c in panel.characters}
        for extra in placeholders(panel.prompt):
            if extra.lower() not in listed:
                listed.add(extra.lower())
                named.append((extra, None))
        for name, ref in named:
            record = characters[name.lower()]
            cast = _cast(story, name.lower())
            strength = 1.0
            if cast and cast.strength is not None:
                strength = cast.strength
            if ref is not None and ref.strength is not None:
                strength = ref.strength
            specs.append(
                CharacterSpec(
                    name=record.name,
                    description=descriptions[name.lower()],
                    image_shas=[img.sha256 for img in record.images],
                    strength=strength,
                    position=ref.position if ref else None,
                    box=tuple(ref.box) if ref and ref.box else None,
                )
            )
        job = PanelJob(
            page=p,
            index=n,
            id=panel.id or f"{p}.{n}",
            prompt=expand_prompt(panel.prompt, descriptions),
            negative_prompt=panel.negative_prompt
            if panel.negative_prompt is not None
            else render.negative_prompt,
            width=rw,
            height=rh,
            steps=render.steps,
            guidance=render.guidance,
            seed=panel.seed if panel.seed is not None else panel_seed(render.seed, panel.id),
            scheduler=render.scheduler,
            model=info.fingerprint,
            guidance_rescale=render.guidance_rescale,
            characters=specs,
            infusion=panel_infusion(info.infusion, cfg.infusion, story.infusion, panel.infusion),
        )
        if job.characters and job.infusion.weight > 0:
            job.infusion_unet, job.infusion_unet_id = _infusion_unet(
                job.infusion.unet, info, ws.root, unets, f"{loaded.display}: panel {job.id}"
            )
        job.loras = layers.loras(p, n, panel, [c.name for c in specs])
        job.embeddings = layers.embeddings(job.prompt, job.negative_prompt)
        job.key = job.compute_key()
        jobs.append(job)
    face_model, face_id = _face_model(render.faces, info, ws.root, loaded.display)
    if face_model:
        from comicgen.faces import panel_faces

        for job in jobs:
            job.faces = panel_faces(job.prompt, job.characters)
            if job.faces:
                job.face_model, job.face_model_id = face_model, face_id
                job.face_strength = render.face_strength
                job.key = job.compute_key()
    unknown = vocabulary_warning(info, [job.prompt for job in jobs])
    if unknown:
        warnings.append(unknown)
    return Plan(loaded, jobs, model_name, info, render, page, warnings, upscale)


def _infusion_unet(setting: str, info, base: Path, seen: dict, where: str) -> tuple[str, str]:
    """(folder, fingerprint) of the U-Net ``[infusion] unet`` names; ("", "") for the own."""
    from comicgen.errors import ModelError
    from comicgen.models import folder_fingerprint, resolve_infusion_unet

    if setting not in seen:
        try:
            folder = resolve_infusion_unet(setting, info, base)
        except ModelError as exc:
            raise ComicgenError(f"{where}: {exc.message}", hint=exc.hint) from None
        seen[setting] = (str(folder), folder_fingerprint(folder)) if folder else ("", "")
    return seen[setting]


def _face_model(setting: str | None, info, base: Path, where: str) -> tuple[str, str]:
    """(folder, fingerprint) of the face model ``[render] faces`` names; ("", "") for none."""
    from comicgen.errors import ModelError
    from comicgen.faces import face_infusion
    from comicgen.models import folder_fingerprint, resolve_faces

    try:
        folder = resolve_faces(setting, info, base)
        if folder and folder != "own":
            face_infusion(folder)  # its settings read before painting: a bad file, one line
    except ModelError as exc:
        raise ComicgenError(f"{where}: {exc.message}", hint=exc.hint) from None
    if folder == "own":
        return "own", info.fingerprint
    return (str(folder), folder_fingerprint(folder)) if folder else ("", "")


def vocabulary_warning(info, prompts: list[str]) -> str | None:
    """For a bundled model, which knows only its own small world: the words of the
    prompts it does not know (it ignores them), and where its words are listed."""
    if info.source.kind != "bundled" or info.source.folder is None:
        return None
    from comicgen.bundled import unknown_words
    from comicgen.fsutil import shown_path

    unknown = unknown_words(info.source.folder, prompts)
    if not unknown:
        return None
    more = len(unknown) - 12
    shown = ", ".join(unknown[:12]) + (f" and {more} more" if more > 0 else "")
    card = shown_path(info.source.folder / "MODEL_CARD.md")
    return (
        f"the model {info.source.name} does not know the word{'s' if len(unknown) > 1 else ''} "
        f"{shown} and paints as if {'they were' if len(unknown) > 1 else 'it was'} not there; "
        f"the words it knows are listed in {card} (Data)"
    )


def panel_sizes(story, page: PageSettings, info, size: int | None, warnings: list[str]):
    """Each panel's painting size, (page, index) → (width, height): its frame's aspect
    (the pages are laid out first, from the story alone) at about the model's native area
    (or ``size`` x ``size``), in multiples of the model's size multiple."""
    from comicgen.models import panel_size, round_size

    side = size or info.native_size
    rounded = round_size(side, info.size_multiple)
    if rounded != side:
        warnings.append(
            f"size {side}x{side} rounded to {rounded}x{rounded} "
            f"(the model needs multiples of {info.size_multiple})"
        )
    sizes: dict[tuple[int, int], tuple[int, int]] = {}
    for p, story_page in enumerate(story.pages, start=1):
        shapes = [panel.shape for panel in story_page.panels]
        frames = page_frames(p, shapes, story_page.layout, page)
        for n, (shape, box) in enumerate(zip(shapes, frames.boxes, strict=True), start=1):
            sizes[(p, n)] = panel_size(info, rounded, box.w / box.h)
            wanted = shape_aspect(shape)
            if shape in SHAPE_ASPECT and abs(math.log(box.w / box.h / wanted)) > math.log(1.3):
                panel = story_page.panels[n - 1]
                warnings.append(
                    f"panel {panel.id or f'{p}.{n}'}: shape '{shape}' but its frame in "
                    f"layout '{frames.name}' is {box.w:.0f}x{box.h:.0f} px; it is painted "
                    "to fit the frame (leave 'layout' out, or choose one with such a frame)"
                )
    return sizes


def _cast(story, lowered: str):
    for name, member in story.cast.items():
        if name.lower() == lowered:
            return member
    return None


# -- selection -------------------------------------------------------------------------


def parse_pages(spec: str | None, total: int) -> set[int] | None:
    """'2-3', '1,4', '2-' → page numbers; None means all."""
    if not spec:
        return None
    pages: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                start = int(lo) if lo else 1
                end = int(hi) if hi else total
                if start > end:
                    raise ComicgenError(
                        f"--pages '{spec}': the range {part} runs backwards",
                        hint=f"write {end}-{start}",
                    )
                pages.update(range(start, end + 1))
            else:
                pages.add(int(part))
        except ValueError:
            raise ComicgenError(
                f"--pages '{spec}' is not a page range", hint="write e.g. 2-3 or 1,4"
            ) from None
    bad = sorted(p for p in pages if not 1 <= p <= total)
    if bad:
        raise ComicgenError(
            f"--pages '{spec}': the story has {total} page{'s' if total != 1 else ''}",
            hint=f"no page {bad[0]}",
        )
    return pages


def select(the_plan: Plan, pages: str | None, panel: str | None) -> list[PanelJob]:
    jobs = the_plan.jobs
    if panel:
        chosen = [j for j in jobs if j.id == panel]
        if not chosen:
            from comicgen.errors import did_you_mean

            raise ComicgenError(
                f"--panel '{panel}': no panel with that id",
                hint=did_you_mean(panel, [j.id for j in jobs])
                or f"panel ids: {', '.join(j.id for j in jobs[:12])}",
            )
        return chosen
    wanted = parse_pages(pages, len(the_plan.loaded.story.pages))
    if wanted is None:
        return jobs
    return [j for j in jobs if j.page in wanted]
