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

from comicgen.errors import ComicgenError, LocatedError, did_you_mean
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
# speed and memory, all off by default: channels_last, compile (or render --compile),
# vae_slicing, vae_tiling, attention_slicing, cpu_offload (= true to turn one on)

[render]
# size = 512           # side of a square panel; empty = the model's native size
steps = 20
guidance = 5.0
# guidance_rescale = 0.7   # empty: 0.7 for zero-terminal-SNR models (the bundled one), else 0
seed = 1234

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
        if start is None and os.environ.get(ENV_WORKSPACE):
            start = Path(os.environ[ENV_WORKSPACE])
            if not (start / CONFIG_NAME).is_file():
                raise ComicgenError(
                    f"{ENV_WORKSPACE}={start} holds no {CONFIG_NAME}",
                    hint="unset it or point it at a workspace",
                )
            return cls.load(start)
        here = Path(start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / CONFIG_NAME).is_file():
                return cls.load(folder)
        raise ComicgenError(
            f"no comicgen workspace ({CONFIG_NAME}) in {here} or any folder above it",
            hint="run 'comicgen new-story NAME --dir PATH' to create one, or pass --workspace PATH",
        )

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


def load_config(path: Path) -> WorkspaceConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ComicgenError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise LocatedError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})",
            file=path,
            hint="save the file as UTF-8",
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        col = getattr(exc, "colno", None)
        msg = getattr(exc, "msg", str(exc))
        raise LocatedError(f"TOML syntax error: {msg}", file=path, line=line, column=col) from None
    try:
        return WorkspaceConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(path, text, exc) from None


def _config_error(path: Path, text: str, exc: ValidationError) -> LocatedError:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    field = ".".join(loc)
    hint = None
    if err["type"] == "extra_forbidden":
        model: type = WorkspaceConfig
        for part in loc[:-1]:
            sub = model.model_fields.get(part)
            model = sub.annotation if sub is not None else model
        known = getattr(model, "model_fields", {})
        hint = did_you_mean(loc[-1], known) or f"known fields: {', '.join(known)}"
        message = f"unknown setting '{loc[-1]}'"
    else:
        message = err["msg"]
    line = _find_key_line(text, loc[-1]) if loc else None
    return LocatedError(message, file=path, line=line, field=field, hint=hint)


def _find_key_line(text: str, key: str) -> int | None:
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith(("[" + key + "]", key + " ", key + "=")):
            return number
    return None
