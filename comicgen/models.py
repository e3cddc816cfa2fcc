"""Where a model lives and what it is, read from its configs without loading weights.

A model name is one of:

- ``bundled:NAME`` — a model shipped inside comicgen (``bundled:toyworld``), works offline;
- a local folder written by ``save_pretrained`` (holds ``model_index.json``);
- a Hugging Face hub id such as ``stable-diffusion-v1-5/stable-diffusion-v1-5``.

Also the size a panel is painted at (:func:`panel_size`), which depends on the model only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from comicgen.bundled import BUNDLED_DIR
from comicgen.errors import ModelError

# -- where a model lives --------------------------------------------------------------


@dataclass
class ModelSource:
    name: str  # as the person wrote it
    kind: str  # bundled | local | hub | file (a single-file checkpoint)
    location: str  # folder path, hub id or file path
    family: str | None = None  # a single file's (comicgen.checkpoints.FAMILIES)
    config: str | None = None  # the folder whose configs build a single file
    vae: str | None = None  # a [model] vae replacing the model's (resolved)

    @property
    def folder(self) -> Path | None:
        return Path(self.location) if self.kind in ("bundled", "local") else None


def resolve(name: str, base: Path | None = None) -> ModelSource:
    """Work out what kind of model ``name`` names (no loading, no network)."""
    name = name.strip()
    if name.startswith("bundled:"):
        bundled = name.split(":", 1)[1]
        folder = BUNDLED_DIR / bundled
        if not (folder / "model_index.json").is_file():
            known = sorted(
                p.name for p in BUNDLED_DIR.glob("*") if (p / "model_index.json").is_file()
            )
            raise ModelError(
                f"no bundled model '{bundled}'",
                hint=f"bundled models: {', '.join(known) or 'none installed'}",
            )
        return ModelSource(name, "bundled", str(folder))
    path = Path(name).expanduser()
    if not path.is_absolute() and base is not None and (base / path).exists():
        path = base / path
    if (
        path.exists()
        or name.startswith((".", "/", "~"))
        or os.sep in name.rstrip("/").split("/", 1)[-1]
        or path.suffix.lower() in (".safetensors", ".ckpt")
    ):
        if path.is_file() or path.suffix.lower() in (".safetensors", ".ckpt"):
            if not path.is_file():
                raise ModelError(f"model file '{name}' does not exist", hint="check model.name")
            return ModelSource(name, "file", str(path.resolve()))
        if not path.is_dir():
            raise ModelError(f"model folder '{name}' does not exist", hint="check model.name")
        if not (path / "model_index.json").is_file():
            raise ModelError(
                f"'{name}' is a folder but not a diffusers model (no model_index.json)",
                hint="point model.name at a folder written by pipeline.save_pretrained(), "
                "or at a hub id",
            )
        return ModelSource(name, "local", str(path.resolve()))
    if name.count("/") != 1:
        raise ModelError(
            f"'{name}' is neither 'bundled:NAME', a local folder nor a hub id 'owner/model'",
            hint='e.g. model.name = "bundled:toyworld"',
        )
    return ModelSource(name, "hub", name)


def _hub_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of a hub model, or None (never touches the network)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        return None


def check_model_available(name: str, base: Path | None = None) -> tuple[bool, str]:
    """(available, detail) without loading weights; used by ``comicgen doctor``.
    A relative folder name is looked up in ``base`` (the workspace) first."""
    try:
        source = resolve(name, base)
    except ModelError as exc:
        return False, exc.line()
    if source.kind == "hub":
        snap = _hub_snapshot(source.location)
        if snap is None:
            return False, f"'{name}' is not in the local Hugging Face cache (needs the network)"
        return True, f"cached at {snap}"
    return True, source.location


# -- inspecting a model without loading it ----------------------------------------------


@dataclass
class ModelInfo:
    source: ModelSource
    fingerprint: str  # changes when the weights or configs change
    native_size: int  # pixels, the size the model was trained at
    size_multiple: int  # width and height must be multiples of this
    # (width, height) in pixels the model was trained at, from its folder's comicgen.json
    buckets: tuple[tuple[int, int], ...] = ()
    # the [infusion] settings that go with the model's infusion U-Net (comicgen.json
    # "infusion"; only when it ships one): beneath the person's, when unet is "auto"
    infusion: dict = field(default_factory=dict)
    # the infusion U-Net folder the model ships (comicgen.json "infusion_unet"), or None
    infusion_unet: Path | None = None
    # the face model the model ships for the face pass (comicgen.json "faces"), or None
    faces: Path | None = None


def inspect_model(name: str, base: Path | None = None, settings=None) -> ModelInfo:
    """Read a model's configs (not its weights) to learn its size and fingerprint;
    ``settings`` (ModelSettings): the [model] family, config and vae of a single-file
    checkpoint or a VAE swap (:mod:`comicgen.checkpoints`)."""
    source = resolve(name, base)
    if source.kind == "file" or (settings is not None and settings.vae):
        from comicgen.checkpoints import inspect_source
        from comicgen.settings import ModelSettings

        return inspect_source(source, settings or ModelSettings(name=name), base)
    folder = source.folder
    if source.kind == "hub":
        folder = _hub_snapshot(source.location)
        if folder is None:
            raise offline_error(source.location)
    assert folder is not None
    # an infusion U-Net the folder ships paints infused panels only: their keys take its
    # own fingerprint (comicgen.jobs), so new infusion weights repaint no plain panel
    data = _model_file(folder)
    trained = model_infusion_unet(folder, data)
    faces = model_faces(folder, data)
    # the face model touches only panels the face pass runs on (their keys take its own
    # fingerprint), so it is left out of the model's too
    skip = tuple(p.name for p in (trained, faces) if p is not None)
    print_ = folder_fingerprint(folder, skip)
    recommended = _infusion_defaults(folder, data) if trained is not None else {}
    return ModelInfo(
        source, print_, *_geometry(folder), _buckets(folder, data), recommended, trained, faces
    )


def _model_file(folder: Path) -> dict:
    """A model folder's ``comicgen.json`` (what comicgen knows of the model beyond its
    diffusers configs), {} when it has none."""
    path = folder / "comicgen.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise _bad_model_file(path)
    return data


def _bad_model_file(path: Path) -> ModelError:
    return ModelError(
        f"{path}: not a comicgen model file",
        hint='it holds {"buckets": [[width, height], ...]}; fix or delete it',
    )


def _buckets(folder: Path, data: dict | None = None) -> tuple[tuple[int, int], ...]:
    """The painting sizes a model was trained at (its aspect-ratio buckets), if its folder
    says: ``comicgen.json`` with ``{"buckets": [[width, height], ...]}`` in pixels
    (``data``: that file, already read)."""
    data = _model_file(folder) if data is None else data
    try:
        return tuple((int(w), int(h)) for w, h in data.get("buckets", []))
    except (ValueError, TypeError):
        raise _bad_model_file(folder / "comicgen.json") from None


def _infusion_defaults(folder: Path, data: dict) -> dict:
    """The ``infusion`` settings of a model folder's comicgen.json (checked), or {}."""
    from pydantic import ValidationError

    from comicgen.settings import InfusionSettings

    recommended = data.get("infusion") or {}
    try:
        InfusionSettings(**recommended)
    except (ValidationError, TypeError) as exc:
        raise ModelError(
            f"{folder / 'comicgen.json'}: its infusion settings are not valid "
            f"({str(exc).splitlines()[0]})",
            hint="they take the keys of [infusion] in comicgen.toml; fix or remove them",
        ) from None
    return recommended


def _geometry(folder: Path) -> tuple[int, int]:
    unet = json.loads((folder / "unet" / "config.json").read_text())
    vae_path = folder / "vae" / "config.json"
    vae_scale = 8
    if vae_path.is_file():
        vae = json.loads(vae_path.read_text())
        vae_scale = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
    sample = unet.get("sample_size", 64)
    if isinstance(sample, list | tuple):
        sample = sample[0]
    levels = len(unet.get("block_out_channels", [0, 0, 0, 0]))
    return int(sample) * vae_scale, vae_scale * 2 ** (levels - 1)


def folder_fingerprint(folder: Path, skip: tuple[str, ...] = ()) -> str:
    """A digest of a model folder's configs and weights (heads and tails of the weight
    files); top-level entries named in ``skip`` are left out."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        rel = path.relative_to(folder).as_posix()
        if rel.split("/", 1)[0] in skip:
            continue
        if path.suffix in (".json", ".txt"):
            digest.update(rel.encode() + b"\0" + path.read_bytes())
        elif path.suffix in (".safetensors", ".bin", ".ckpt", ".pt"):
            size = path.stat().st_size
            with path.open("rb") as handle:
                head = handle.read(65536)
                handle.seek(max(0, size - 65536))
                tail = handle.read(65536)
            digest.update(rel.encode() + str(size).encode() + head + tail)
    return digest.hexdigest()[:16]


# -- an infusion-trained U-Net ([infusion] unet; swapped in by comicgen.infusion.unet) ----


def model_infusion_unet(model_folder: Path | None, data: dict | None = None) -> Path | None:
    """The infusion U-Net a model folder ships (its ``comicgen.json`` says; ``data``: that
    file, already read), or None."""
    if model_folder is None:
        return None
    name = (_model_file(model_folder) if data is None else data).get("infusion_unet")
    if not name:
        return None
    folder = model_folder / name
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"{model_folder / 'comicgen.json'}: infusion_unet '{name}' is not a U-Net folder",
            hint="it names a subfolder with config.json and weights; fix or remove the entry",
        )
    return folder


def model_faces(model_folder: Path, data: dict) -> Path | None:
    """The face model a model folder ships (``comicgen.json`` "faces": a subfolder with
    ``unet/``), or None."""
    name = data.get("faces")
    if not name:
        return None
    folder = model_folder / name
    if not _is_face_model(folder):
        raise ModelError(
            f"{model_folder / 'comicgen.json'}: faces '{name}' is not a face-model folder",
            hint="it names a subfolder holding unet/ (and optionally text_encoder/); fix or "
            "remove the entry",
        )
    return folder


def resolve_faces(
    setting: str | None, info: ModelInfo | None, base: Path | None
) -> Path | str | None:
    """The face-model folder ``[render] faces`` names ("auto", the default: the one the
    model ships, if any), "own" (the panel's own U-Net and text encoder, as ADetailer
    repaints with the model that painted), or None: no face pass (None and "none")."""
    if setting is None or setting == "none":
        return None
    if setting == "own":
        return "own"
    if setting == "auto":
        return info.faces if info is not None else None
    path = Path(setting).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not _is_face_model(path):
        raise ModelError(
            f"faces '{setting}' is not a face-model folder (no unet/config.json in it)",
            hint='set [render] faces to "auto", "own", "none" or a folder holding unet/ '
            "(and optionally text_encoder/ and vae/) saved by diffusers",
        )
    return path.resolve()


def _is_face_model(folder: Path) -> bool:
    return (folder / "unet" / "config.json").is_file()


def resolve_infusion_unet(setting: str, info: ModelInfo | None, base: Path | None) -> Path | None:
    """The U-Net folder ``[infusion] unet`` names for the model ``info`` describes (None: a
    model that ships none); None: the model's own. "auto" is the infusion U-Net the model
    ships (read once, by :func:`inspect_model`)."""
    if setting == "own":
        return None
    if setting == "auto":
        return info.infusion_unet if info is not None else None
    path = Path(setting).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not (path / "config.json").is_file():
        raise ModelError(
            f"infusion unet '{setting}' is not a U-Net folder (no config.json in it)",
            hint='set [infusion] unet to "auto", "own" or a folder written by '
            "UNet2DConditionModel.save_pretrained (the trainer's OUT/unet)",
        )
    return path.resolve()


def offline_error(repo_id: str) -> ModelError:
    return ModelError(
        f"model '{repo_id}' is not in the local Hugging Face cache and the hub cannot be "
        "reached (offline?)",
        hint=f"download it on a connected machine ('hf download {repo_id}'), or set "
        "model.name to a local folder written by save_pretrained, or use 'bundled:toyworld'",
    )


# -- painting sizes ----------------------------------------------------------------------


def round_size(value: int, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def panel_size(info: ModelInfo, size: int | None, aspect: float) -> tuple[int, int]:
    """(width, height) a panel whose frame has ``aspect`` (width / height) is painted at:
    at the native size, one of the model's trained sizes (``buckets``) of that aspect if
    it has one; else about the area of a ``size`` x ``size`` square (None: the model's
    native size), in the multiples the model needs (see :func:`fit_size`)."""
    side = round_size(size or info.native_size, info.size_multiple)
    if info.buckets and side == info.native_size:
        # a size the model was trained at, when one has the frame's aspect (within 3%)
        w, h = min(info.buckets, key=lambda b: abs(math.log(b[0] / b[1] / aspect)))
        if abs(math.log(w / h / aspect)) <= math.log1p(0.03):
            return w, h
    return fit_size(aspect, side, info.size_multiple)


def fit_size(aspect: float, side: int, multiple: int, tolerance: float = 0.03) -> tuple[int, int]:
    """(width, height) in multiples of ``multiple`` for a painting of ``aspect``: of sizes
    0.5 to 2 times the area of ``side`` x ``side``, the nearest that area within
    ``tolerance`` of ``aspect``, else the nearest aspect (a coarse model, 64 px in steps of
    16, misses some; the frame meets the rest: ``layout.compose.meet_painting``)."""
    area, best = side * side, None
    for h in range(multiple, int(math.sqrt(area * 2 / min(aspect, 1.0))) + 1, multiple):
        low = max(multiple, math.floor(h * aspect / multiple) * multiple)
        for w in (low, low + multiple):
            ratio = w * h / area
            miss = abs(math.log(w / h / aspect))
            key = (max(miss - math.log1p(tolerance), 0.0), abs(math.log(ratio)))
            if 0.5 <= ratio <= 2 and (best is None or key < best[0]):
                best = (key, w, h)
    if best is None:  # a model whose multiple is larger than its native size
        w, h = side * math.sqrt(aspect), side / math.sqrt(aspect)
        return round_size(round(w), multiple), round_size(round(h), multiple)
    return best[1], best[2]
