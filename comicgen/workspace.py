"""Finding and creating a workspace.

A workspace is a folder holding ``comicgen.toml`` (the defaults), ``stories/``,
``characters/``, ``templates/`` (optional overrides of the shipped templates),
``build/`` (the output) and ``comicgen.db`` (the character library and render cache).
Commands find it by walking up from the current directory, like git; ``--workspace``
or the ``COMICGEN_WORKSPACE`` environment variable override that.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from comicgen.errors import (
    ComicgenError,
    LocatedError,
    did_you_mean,
    one_or_all,
    validation_message,
)
from comicgen.settings import WorkspaceConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_NAME = "comicgen.toml"
ENV_WORKSPACE = "COMICGEN_WORKSPACE"

CONFIG_TEMPLATE = """\
# comicgen workspace settings. Every value here is a default that a story can
# override (model:, settings:, infusion: in the story YAML).

[model]
# 'bundled:toyworld' (ships with comicgen, works offline), a Hugging Face hub id such as
# 'stable-diffusion-v1-5/stable-diffusion-v1-5', or a local folder saved by diffusers.
name = "bundled:toyworld"
device = "auto"        # auto | cpu | cuda | cuda:1 | mps
dtype = "auto"         # auto | float32 | float16 | bfloat16
memory = "auto"       # auto | low | lowest: GPU memory plan (comicgen doctor shows it)
# speed and memory, all off by default: channels_last, compile (or render --compile),
# vae_slicing, vae_tiling, attention_slicing, cpu_offload (= true to turn one on)

[render]
# size = 512           # side of a square panel; empty = the model's native size
steps = 20
guidance = 5.0
# guidance_rescale = 0.7   # empty: 0.7 for zero-terminal-SNR models (the bundled one), else 0
seed = 1234
# upscale = "none"    # empty: "bundled:toyworld-x4" for the bundled model, else "none";
#                      # or a super-resolution .pth/.safetensors file (ESRGAN, SwinIR, ...)
# faces = "auto"      # the face pass: the model's face model if it ships one (the
#                      # bundled one does), "none", "own", or a folder; face_strength = 0.55

[infusion]
weight = 1.0           # 0 turns character infusion off
mode = "regional"      # regional | mean | seed

[page]
preset = "comic"       # comic | square | webtoon
dpi = 150
"""


@dataclass
class Workspace:
    root: Path
    config: WorkspaceConfig

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def stories_dir(self) -> Path:
        return self.root / "stories"

    @property
    def characters_dir(self) -> Path:
        return self.root / "characters"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def cache_dir(self) -> Path:
        return self.root / ".cache"

    @property
    def db_path(self) -> Path:
        return self.root / "comicgen.db"

    def relative(self, path: Path) -> str:
        """``path`` relative to the workspace root when inside it, for messages."""
        try:
            return str(Path(path).resolve().relative_to(self.root))
        except ValueError:
            return str(path)

    # -- construction ---------------------------------------------------------------

    @classmethod
    def load(cls, root: Path) -> Workspace:
        root = Path(root).resolve()
        return cls(root=root, config=load_config(root / CONFIG_NAME))

    @classmethod
    def find(cls, start: Path | None = None) -> Workspace:
        """The workspace holding ``start`` (default: the env var, then the current dir)."""
        return cls.load(find_root(start))

    @classmethod
    def create(cls, root: Path) -> Workspace:
        """Make ``root`` a workspace; existing files are left as they are."""
        root = Path(root).resolve()
        root.mkdir(parents=True, exist_ok=True)
        config = root / CONFIG_NAME
        if not config.exists():
            config.write_text(CONFIG_TEMPLATE, encoding="utf-8")
        for sub in ("stories", "characters"):
            (root / sub).mkdir(exist_ok=True)
        return cls.load(root)


def find_root(start: Path | None = None) -> Path:
    """The folder of the workspace holding ``start`` (default: $COMICGEN_WORKSPACE, then
    the current directory), found by walking up like git; its config is not read."""
    if start is None and os.environ.get(ENV_WORKSPACE):
        start = Path(os.environ[ENV_WORKSPACE])
        if not (start / CONFIG_NAME).is_file():
            raise ComicgenError(
                f"{ENV_WORKSPACE}={start} holds no {CONFIG_NAME}",
                hint="unset it or point it at a workspace",
            )
        return start.resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise ComicgenError(
        f"no comicgen workspace ({CONFIG_NAME}) in {here} or any folder above it",
        hint="run 'comicgen new-story NAME --dir PATH' to create one, or pass --workspace PATH",
    )


def load_config(path: Path) -> WorkspaceConfig:
    """Read and check ``comicgen.toml``; every problem is reported like a story's:
    ``file:line:column: field: what is wrong — what is allowed``."""
    from comicgen.fsutil import shown_path

    shown = shown_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ComicgenError(f"{shown}: no such file") from None
    except UnicodeDecodeError as exc:
        raise LocatedError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})",
            file=shown,
            hint="save the file as UTF-8",
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(shown, exc) from None
    try:
        return WorkspaceConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(shown, text, exc) from None


def _toml_error(shown: str, exc: Exception) -> LocatedError:
    import re

    text = getattr(exc, "msg", None) or str(exc)
    line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    at = re.search(r"\s*\(at line (\d+), column (\d+)\)$", text)
    if at:
        line, col = int(at.group(1)), int(at.group(2))
        text = text[: at.start()]
    elif text.endswith("(at end of document)"):
        text = text.removesuffix("(at end of document)").rstrip()
    hint = None
    if "invalid value" in text.lower():
        hint = 'text needs quotes (device = "cpu"), numbers none (steps = 20)'
    return LocatedError(
        f"TOML syntax error: {text[:1].lower()}{text[1:]}",
        file=shown,
        line=line,
        column=col,
        hint=hint,
    )


def _config_error(shown: str, text: str, exc: ValidationError) -> ComicgenError:
    found = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        hint = None
        if err["type"] == "extra_forbidden":
            known = _fields_at(loc[:-1])
            hint = did_you_mean(loc[-1], known) or f"known settings here: {', '.join(known)}"
            message = f"unknown setting '{loc[-1]}'"
        else:
            message = validation_message(err)
            info = _field_at(loc)
            if info is not None and info.description and err["type"] != "value_error":
                hint = info.description.rstrip(".") + _bounds(info)
        line = _find_key(text, loc)
        found.append(LocatedError(message, file=shown, line=line, field=".".join(loc), hint=hint))
    return one_or_all(found)


def _bounds(info) -> str:
    """' (from 1 to 200)' for a field with bounds, else ''."""
    low = high = None
    for rule in info.metadata:
        low = getattr(rule, "ge", None) if getattr(rule, "ge", None) is not None else low
        high = getattr(rule, "le", None) if getattr(rule, "le", None) is not None else high
    if low is not None and high is not None:
        return f" (from {low} to {high})"
    return f" (at least {low})" if low is not None else ""


def _field_at(loc: list[str]):
    model: type = WorkspaceConfig
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        info = fields[part]
        model = info.annotation
    return info


def _fields_at(loc: list[str]) -> list[str]:
    model = _field_at(loc).annotation if loc and _field_at(loc) else WorkspaceConfig
    return list(getattr(model, "model_fields", {}))


def _find_key(text: str, loc: list[str]) -> int | None:
    """Where ``loc`` (table path + key) is written: the key inside its [table], else the
    table's header, else the key anywhere."""
    table, key = ".".join(loc[:-1]), loc[-1] if loc else ""
    current = ""
    header = anywhere = None
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            current = stripped.strip("[] \t").split("]")[0].strip()
            if current == ".".join(loc):
                header = header or number
            continue
        name = stripped.split("=", 1)[0].strip().strip("\"'")
        if "=" in stripped and name == key:
            if current == table:
                return number
            anywhere = anywhere or number
    return header or anywhere
