"""LoRAs and textual-inversion embeddings: real tiny files made with peft / diffusers'
savers, loaded through diffusers' loaders; part of each panel's cache key."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from comicgen.adapters import EmbeddingUse, LoraUse, file_sha
from comicgen.cli import app
from comicgen.jobs import plan
from comicgen.library import Library
from comicgen.painter import Painter, PaintJob
from comicgen.settings import ModelSettings
from tests.helpers import make_sheet, tiny_workspace
from tests.support.adapters import save_tiny_embedding, save_tiny_lora
from tests.support.tiny import TINY, tiny_pipeline


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    pipe = tiny_pipeline("tiny")
    return {
        "lora": save_tiny_lora(pipe, root / "style.safetensors", seed=1),
        "lora2": save_tiny_lora(pipe, root / "hero.safetensors", seed=2),
        "embedding": save_tiny_embedding(pipe, root / "inky.safetensors"),
    }


@pytest.fixture(scope="module")
def painter():
    return Painter.load(ModelSettings(name=TINY, device="cpu"))


def paint(painter, prompt="a red cat on grass", **kw):
    job = PaintJob(prompt=prompt, width=64, height=64, steps=2, guidance=4.0, seed=3, **kw)
    return np.asarray(painter.paint(job), dtype=np.int16)


def lora(path, weight):
    return (LoraUse(str(path), weight, file_sha(path)),)


def test_a_lora_changes_the_picture_and_weight_0_does_not(files, painter):
    plain = paint(painter)
    with_lora = paint(painter, loras=lora(files["lora"], 1.0))
    assert np.abs(plain - with_lora).mean() > 0.5
    half = paint(painter, loras=lora(files["lora"], 0.5))
    assert 0 < np.abs(plain - half).mean() < np.abs(plain - with_lora).mean()
    assert np.array_equal(paint(painter, loras=lora(files["lora"], 0.0)), plain)
    assert np.array_equal(paint(painter), plain)  # switched off again: as before
    both = paint(painter, loras=lora(files["lora"], 1.0) + lora(files["lora2"], 1.0))
    assert not np.array_equal(both, with_lora)


def test_an_embedding_applies_where_its_trigger_word_is(files):
    painter = Painter.load(ModelSettings(name=TINY, device="cpu"))
    before = paint(painter, "a red cat inky")
    use = (EmbeddingUse(str(files["embedding"]), "inky", file_sha(files["embedding"])),)
    after = paint(painter, "a red cat inky", embeddings=use)
    assert np.abs(before - after).mean() > 0.5
    # other prompts paint as before with the embedding loaded
    fresh = Painter.load(ModelSettings(name=TINY, device="cpu"))
    assert np.array_equal(paint(painter), paint(fresh))


def test_infusion_works_with_a_lora_and_its_cache_knows_the_lora(files, tmp_path):
    from PIL import Image

    from comicgen.infusion import CharacterRefs
    from tests.helpers import make_sheet

    sheets = make_sheet(tmp_path / "pip", "red")
    images = [Image.open(p).convert("RGB") for p in sheets]
    ref = CharacterRefs(name="pip", images=images, description="a red circle", key="pip")

    def infused(painter, loras=()):
        return paint(painter, "pip on grass", characters=[ref], loras=loras)

    warm = Painter.load(ModelSettings(name=TINY, device="cpu"))
    plain_infused = infused(warm)  # fills the reference-feature cache without the LoRA
    assert not np.array_equal(plain_infused, paint(warm, "pip on grass"))
    with_lora = infused(warm, lora(files["lora"], 1.0))
    assert np.abs(with_lora - plain_infused).mean() > 0.5
    fresh = Painter.load(ModelSettings(name=TINY, device="cpu"))
    assert np.array_equal(with_lora, infused(fresh, lora(files["lora"], 1.0)))


STORY = """\
title: LoRAs
loras: [{path: STYLE, weight: 0.8}]
embeddings: [{path: INKY}]
pages:
  - panels:
      - prompt: a tree, grass
      - prompt: "{pip} on grass"
        characters: [pip]
      - prompt: a house, inky
        loras: [{path: STYLE, weight: W}]
"""


def story_text(files, weight):
    text = STORY.replace("STYLE", str(files["lora"])).replace("INKY", str(files["embedding"]))
    return text.replace("W", str(weight))


def keyed_jobs(ws, files, weight):
    (ws.stories_dir / "l.yaml").write_text(story_text(files, weight), encoding="utf-8")
    with Library.open(ws.db_path, ws.cache_dir) as library:
        return plan(ws, ws.stories_dir / "l.yaml", library).jobs


def test_the_panel_key_follows_the_loras_and_only_the_panels_they_touch(files, tmp_path):
    ws = tiny_workspace(tmp_path / "w")
    hero = files["lora2"].name
    (ws.characters_dir / hero).write_bytes(files["lora2"].read_bytes())
    (ws.characters_dir / "pip.yaml").write_text(
        f"name: Pip\ndescription: a red circle character\nloras: [{{path: {hero}, weight: 0.5}}]\n"
    )
    first = keyed_jobs(ws, files, 0.3)
    assert [len(j.loras) for j in first] == [1, 2, 1]  # the story's; + Pip's; the panel's
    assert first[0].loras[0].weight == 0.8 and first[2].loras[0].weight == 0.3
    assert [len(j.embeddings) for j in first] == [0, 0, 1]  # 'inky' only in panel 3
    second = keyed_jobs(ws, files, 0.6)
    assert [a.key == b.key for a, b in zip(first, second, strict=True)] == [True, True, False]
    off = keyed_jobs(ws, files, 0)
    assert off[2].loras == () and off[2].key != first[2].key
    # weight 0 is the same panel as no LoRA at all
    (ws.root / "comicgen.toml").write_text(f"[model]\nname = '{TINY}'\n[render]\nsteps = 2\n")
    text = story_text(files, 0).replace(f"loras: [{{path: {files['lora']}, weight: 0.8}}]\n", "")
    (ws.stories_dir / "l.yaml").write_text(text, encoding="utf-8")
    with Library.open(ws.db_path, ws.cache_dir) as library:
        bare = plan(ws, ws.stories_dir / "l.yaml", library).jobs
    assert bare[2].key == off[2].key
    # and the cached pictures: changing one panel's weight repaints that panel only
    runner = CliRunner()
    (ws.stories_dir / "l.yaml").write_text(story_text(files, 0.3), encoding="utf-8")
    args = ["render", "stories/l.yaml", "--workspace", str(ws.root)]
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and "3 panels painted, 0 reused" in out.output, out.output
    (ws.stories_dir / "l.yaml").write_text(story_text(files, 0.6), encoding="utf-8")
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and "1 panel painted, 2 reused" in out.output, out.output


def one_line(result, *words):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0], lines[0]


def test_missing_or_wrong_lora_files_are_one_line(files, tmp_path):
    ws = tiny_workspace(tmp_path / "w")
    make_sheet(ws.characters_dir / "pip", "red")
    runner = CliRunner()
    story = ws.stories_dir / "s.yaml"
    story.write_text(
        "title: T\npages:\n  - panels:\n      - prompt: a tree\n"
        "        loras: [{path: nowhere.safetensors}]\n"
    )
    args = ["render", "stories/s.yaml", "--workspace", str(ws.root)]
    one_line(runner.invoke(app, args), "stories/s.yaml:5:", "pages[0].panels[0].loras[0].path")
    (ws.root / "notalora.safetensors").write_bytes(files["embedding"].read_bytes())
    story.write_text(story.read_text().replace("nowhere", "notalora"))
    one_line(runner.invoke(app, args), "stories/s.yaml:5:", "is not a LoRA", "notalora")
    story.write_text("title: T\npages:\n  - panels:\n      - prompt: a tree\n")
    (ws.root / "comicgen.toml").write_text(
        f"[model]\nname = '{TINY}'\nloras = [{{path = 'gone.safetensors', weight = 2}}]\n"
    )
    one_line(runner.invoke(app, args), "comicgen.toml: model.loras[0].path", "gone")


def test_sdxl_takes_a_lora_and_a_two_encoder_embedding(tmp_path):
    import torch
    from safetensors.torch import save_file

    from tests.support.tiny import tiny_model_dir

    pipe = tiny_pipeline("sdxl")
    lora_file = save_tiny_lora(pipe, tmp_path / "xl-style.safetensors")
    generator = torch.Generator().manual_seed(0)
    vectors = {
        "clip_l": torch.randn(1, 768, generator=generator),
        "clip_g": torch.randn(1, 1280, generator=generator),
    }
    save_file(vectors, str(tmp_path / "xl-emb.safetensors"))
    painter = Painter.load(ModelSettings(name=str(tiny_model_dir("sdxl")), device="cpu"))
    plain = paint(painter, "a cat xlemb")
    emb = EmbeddingUse(str(tmp_path / "xl-emb.safetensors"), "xlemb", "e" * 64)
    with_both = paint(painter, "a cat xlemb", loras=lora(lora_file, 1.0), embeddings=(emb,))
    assert np.abs(plain - with_both).mean() > 0.1
    assert painter.adapters.tokens == {"xlemb": "e" * 64}
