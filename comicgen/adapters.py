"""LoRAs and textual-inversion embeddings, through diffusers' loaders (backed by peft).

Where they come from, in order (a later entry for the same file sets its weight; weight 0
turns it off): ``[model] loras`` of ``comicgen.toml``, ``loras:`` of the story, the
``loras:`` of each character shown in the panel (in its ``characters/NAME.yaml``), and
``loras:`` of the panel. Embeddings (``[model] embeddings``, the story's
``embeddings:``) apply where their trigger word is in the panel's prompt.

Each panel's job carries the LoRAs and embeddings it uses, with each file's sha256, so
that they are part of its cache key: changing a LoRA's weight repaints exactly the panels
it touches. The painter loads each file once (``load_lora_weights`` with an adapter name
from the file's hash, ``load_textual_inversion``) and switches the set per batch
(``set_adapters``, ``disable_lora``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from comicgen.errors import ComicgenError, ModelError
from comicgen.settings import EmbeddingSpec, LoraSpec

EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")


@dataclass(frozen=True)
class LoraUse:
    path: str  # resolved
    weight: float
    sha: str  # of the file's bytes

    @property
    def adapter(self) -> str:
        return f"lora_{self.sha[:16]}"


@dataclass(frozen=True)
class EmbeddingUse:
    path: str
    token: str
    sha: str


_digests: dict[tuple[str, int, int], str] = {}


def file_sha(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) for this process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _digests[key] = digest.hexdigest()
    return _digests[key]


Fail = Callable[[tuple, str, str | None], Exception]  # (place, message, hint) -> error


def _locate(given: str, base: Path, loc: tuple, what: str, fail: Fail) -> Path:
    path = Path(given).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise fail(
            loc + ("path",),
            f"{what} file '{given}' does not exist",
            "relative paths start at the workspace (a character's at its YAML file)",
        )
    return path.resolve()


def lora_uses(specs: Iterable[LoraSpec], base: Path, fail: Fail) -> list[LoraUse]:
    """The LoRAs of one layer (workspace, story, character or panel), files located."""
    out = []
    for i, spec in enumerate(specs):
        path = _locate(spec.path, base, ("loras", i), "LoRA", fail)
        _check_lora(path, spec.path, ("loras", i, "path"), fail)
        out.append(LoraUse(str(path), float(spec.weight), file_sha(path)))
    return out


def _check_lora(path: Path, given: str, loc: tuple, fail: Fail) -> None:
    """A .safetensors LoRA names its weights '...lora...' (diffusers' own test); checked
    from the header before anything is painted."""
    if path.suffix.lower() != ".safetensors":
        return
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except Exception:  # noqa: BLE001 - a corrupt header raises many kinds
        raise fail(loc, f"'{given}' is not a readable .safetensors file", None) from None
    if not any("lora" in key.lower() for key in keys):
        raise fail(
            loc,
            f"'{given}' is not a LoRA (no LoRA weights in it)",
            "an embedding goes in embeddings, a checkpoint in model.name",
        )


def combine(*layers: Sequence[LoraUse]) -> tuple[LoraUse, ...]:
    """One set from the layers, later ones setting the weight of a file named before;
    weight 0 drops it. Sorted by file hash, so the order they are listed in does not
    change the key (LoRAs add up)."""
    chosen: dict[str, LoraUse] = {}
    for layer in layers:
        for use in layer:
            chosen[use.sha] = use
    return tuple(sorted((u for u in chosen.values() if u.weight != 0), key=lambda u: u.sha))


def embedding_uses(specs: Iterable[EmbeddingSpec], base: Path, fail: Fail) -> list[EmbeddingUse]:
    out = []
    for i, spec in enumerate(specs):
        path = _locate(spec.path, base, ("embeddings", i), "embedding", fail)
        use = EmbeddingUse(str(path), spec.token or path.stem, file_sha(path))
        if any(e.token == use.token for e in out):
            raise fail(
                ("embeddings", i, "token"),
                f"two embeddings use the trigger word '{use.token}'",
                "give one of them another token",
            )
        out.append(use)
    return out


def used_embeddings(embeddings: Iterable[EmbeddingUse], *texts: str) -> tuple[EmbeddingUse, ...]:
    """The embeddings whose trigger word is in one of ``texts`` (prompt, negative)."""
    return tuple(
        sorted(
            (e for e in embeddings if any(e.token in text for text in texts)),
            key=lambda e: e.token,
        )
    )


def key_data(loras: Sequence[LoraUse], embeddings: Sequence[EmbeddingUse]) -> dict:
    """What the panel cache key holds of them (the files' hashes, not their paths)."""
    data: dict = {}
    if loras:
        data["loras"] = [[u.sha, u.weight] for u in loras]
    if embeddings:
        data["embeddings"] = [[e.sha, e.token] for e in embeddings]
    return data


class Adapters:
    """The LoRAs and embeddings loaded into one pipeline, and which are active."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.loras: set[str] = set()  # adapter names loaded
        self.tokens: dict[str, str] = {}  # token -> sha of the file loaded for it
        self.active: tuple = ()

    def activate(self, jobs: Sequence) -> None:
        """Make the LoRA set of ``jobs`` (one set for the batch) the active one and load
        every embedding they use."""
        loras = tuple(jobs[0].loras)
        if any(tuple(job.loras) != loras for job in jobs[1:]):
            raise ValueError("a batch must share its LoRAs")
        for use in {e for job in jobs for e in job.embeddings}:
            self._embedding(use)
        for use in loras:
            if use.adapter not in self.loras:
                self._load_lora(use)
        if loras:
            self.pipe.enable_lora()
            self.pipe.set_adapters([u.adapter for u in loras], [u.weight for u in loras])
        elif self.loras:
            self.pipe.disable_lora()
        self.active = loras
        # the reference-feature cache of Infusion keys on the U-Net as it now computes
        self.pipe._comicgen_adapters = ",".join(f"{u.sha[:16]}:{u.weight}" for u in loras) + (
            "|" + ",".join(f"{t}:{s[:16]}" for t, s in sorted(self.tokens.items()))
        )

    def _load_lora(self, use: LoraUse) -> None:
        try:
            with _quiet():
                self.pipe.load_lora_weights(use.path, adapter_name=use.adapter)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ModelError(
                f"LoRA '{use.path}' does not fit this model ({why})",
                hint="is it a LoRA for this model's family (SD 1.x, SD 2.x or SDXL)?",
            ) from None
        self.loras.add(use.adapter)

    def _embedding(self, use: EmbeddingUse) -> None:
        if self.tokens.get(use.token) == use.sha:
            return
        pipe = self.pipe
        pairs = [(pipe.text_encoder, pipe.tokenizer)]
        if getattr(pipe, "text_encoder_2", None) is not None:
            pairs.append((pipe.text_encoder_2, pipe.tokenizer_2))
        if use.token in self.tokens:  # the file changed (the studio): load it again
            for encoder, tokenizer in pairs:
                pipe.unload_textual_inversion(use.token, tokenizer=tokenizer, text_encoder=encoder)
        try:
            with _quiet():
                _load_embedding(pipe, use, pairs)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ModelError(
                f"embedding '{use.path}' does not fit this model ({why})",
                hint="is it a textual-inversion embedding for this model's family?",
            ) from None
        self.tokens[use.token] = use.sha


def _load_embedding(pipe, use: EmbeddingUse, pairs: list) -> None:
    if len(pairs) == 2:  # SDXL embeddings hold one vector set per text encoder
        state = _read_embedding(Path(use.path))
        for (encoder, tokenizer), part in zip(pairs, ("clip_l", "clip_g"), strict=True):
            if part not in state:
                raise ValueError(f"an SDXL embedding needs '{part}'")
            pipe.load_textual_inversion(
                state[part], token=use.token, text_encoder=encoder, tokenizer=tokenizer
            )
    else:
        pipe.load_textual_inversion(use.path, token=use.token)


@contextmanager
def _quiet():
    """diffusers' and transformers' notes while loading (no text-encoder LoRA keys, how
    new token embeddings are initialised) are not the person's business."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    before = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(before[0])
        transformers_logging.set_verbosity(before[1])


def _read_embedding(path: Path) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def _loc_text(loc: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


class AdapterPlan:
    """The LoRA and embedding layers of one story's plan: the workspace's, the story's,
    the characters' (read from their YAML files) and each panel's."""

    def __init__(self, ws, loaded):
        self.ws, self.loaded = ws, loaded
        model = ws.config.model

        def toml(loc, message, hint):
            return ComicgenError(f"comicgen.toml: model.{_loc_text(loc)}: {message}", hint=hint)

        self.base = lora_uses(model.loras, ws.root, toml)
        story = loaded.story
        self.story = lora_uses(story.loras, ws.root, loaded.error)
        self.all_embeddings = embedding_uses([*model.embeddings, *story.embeddings], ws.root, toml)
        self._characters: dict[str, list[LoraUse]] | None = None

    def loras(self, page: int, index: int, panel, names: Sequence[str]) -> tuple[LoraUse, ...]:
        own = self.characters()
        chars = [use for name in names for use in own.get(name.casefold(), [])]
        where = ("pages", page - 1, "panels", index - 1)
        panel_uses = lora_uses(
            panel.loras, self.ws.root, lambda loc, m, h: self.loaded.error(where + loc, m, h)
        )
        return combine(self.base, self.story, chars, panel_uses)

    def embeddings(self, *texts: str) -> tuple[EmbeddingUse, ...]:
        return used_embeddings(self.all_embeddings, *texts)

    def characters(self) -> dict[str, list[LoraUse]]:
        """name (casefolded) -> the LoRAs its characters/NAME.yaml brings."""
        if self._characters is None:
            from comicgen.library.folders import character_files, read_character_file

            self._characters = {}
            folder = self.ws.characters_dir
            for path in character_files(folder) if folder.is_dir() else []:
                try:
                    if "loras" not in path.read_text(encoding="utf-8", errors="replace"):
                        continue
                except OSError:
                    continue
                shown = self.ws.relative(path)
                spec = read_character_file(path, folder, allow_outside=True, display=shown)

                def fail(loc, message, hint, shown=shown):
                    return ComicgenError(f"{shown}: {_loc_text(loc)}: {message}", hint=hint)

                self._characters[spec.name.casefold()] = lora_uses(spec.loras, folder, fail)
        return self._characters
