"""[infusion] unet: an infusion-trained U-Net paints the infused panels only, swapped in
place (weights, not modules), with its own feature cache and its own cache keys."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from typer.testing import CliRunner

from comicgen.cli import app
from comicgen.errors import ModelError
from comicgen.jobs import plan
from comicgen.library import Library
from comicgen.models import inspect_model, resolve_infusion_unet
from comicgen.painter import Painter, PaintJob
from comicgen.settings import InfusionSettings, ModelSettings
from comicgen.workspace import Workspace
from tests.helpers import tiny_workspace
from tests.support.tiny import TINY, save_tiny_pipeline
from tests.test_infusion import character


def trained_unet(folder, seed=1):
    """The tiny model's U-Net with its weights moved: stands in for a trained one."""
    unet = UNet2DConditionModel.from_pretrained(TINY, subfolder="unet")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    unet.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The tiny model with an infusion U-Net it names in comicgen.json."""
    folder = tmp_path_factory.mktemp("m") / "model"
    shutil.copytree(TINY, folder)
    trained_unet(folder / "unet-infusion")
    recommended = {"levels": ["attention", "blocks"], "attention": {"weight": 2.0}}
    (folder / "comicgen.json").write_text(
        json.dumps({"infusion_unet": "unet-infusion", "infusion": recommended})
    )
    return folder


def test_the_setting_names_the_model_s_own_its_trained_or_a_folder(model, tmp_path):
    info = inspect_model(str(model))
    assert resolve_infusion_unet("auto", info, None) == model / "unet-infusion"
    assert resolve_infusion_unet("own", info, None) is None
    assert resolve_infusion_unet("auto", inspect_model(str(TINY)), None) is None  # ships none
    trained_unet(tmp_path / "mine")
    assert resolve_infusion_unet("mine", info, tmp_path) == (tmp_path / "mine").resolve()
    with pytest.raises(ModelError, match="not a U-Net folder"):
        resolve_infusion_unet("nowhere", info, tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "comicgen.json").write_text(json.dumps({"infusion_unet": "gone"}))
    with pytest.raises(ModelError, match="infusion_unet 'gone'"):
        inspect_model(str(broken))
    for text in ("[1]", "{not json", '{"buckets": 5}'):  # one reader, one message
        (broken / "comicgen.json").write_text(text)
        with pytest.raises(ModelError, match="not a comicgen model file"):
            inspect_model(str(broken))


def test_only_infused_panels_use_it_and_the_own_weights_come_back(model, tmp_path):
    painter = Painter.load(ModelSettings(name=str(model), device="cpu"))

    def paint(unet="", characters=()):
        s = InfusionSettings()
        job = PaintJob(
            prompt="a red cat on grass", width=64, height=64, steps=2, guidance=4.0, seed=3,
            characters=list(characters), infusion=s, infusion_unet=unet,
        )  # fmt: skip
        return np.asarray(painter.paint(job), dtype=np.int16)

    plain = paint()
    own = paint("", [character()])
    trained = paint(str(model / "unet-infusion"), [character()])
    assert np.abs(trained - own).max() > 8, "the infusion U-Net changed nothing"
    assert np.array_equal(paint(), plain)  # the own weights are back for plain panels
    # each U-Net keeps its own reference features: the cached panels repeat (float
    # rounding of the batched reference rows at most)
    assert np.abs(paint("", [character()]) - own).max() <= 1
    assert np.abs(paint(str(model / "unet-infusion"), [character()]) - trained).max() <= 1
    save_tiny_pipeline(tmp_path / "sd15", "sd15")
    with pytest.raises(ModelError, match="does not fit this model"):
        paint(str(tmp_path / "sd15" / "unet"), [character()])


def test_render_keys_and_errors(model, tmp_path):
    ws = tiny_workspace(tmp_path / "w")
    ws.config_path.write_text(
        f"[model]\nname = '{model.as_posix()}'\n[render]\nsteps = 2\n[page]\ndpi = 48\n"
    )
    story = ws.stories_dir / "s.yaml"
    story.write_text(
        "title: T\npages:\n  - panels:\n      - prompt: a tree\n"
        "      - prompt: '[pip] on grass'\n        characters: [{name: pip}]\n"
    )
    runner = CliRunner()
    args = ["render", "stories/s.yaml", "--workspace", str(ws.root)]
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and "2 panels painted, 0 reused" in out.output, out.output
    # new infusion weights repaint the panel with a character, not the other
    trained_unet(model / "unet-infusion", seed=2)
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and "1 panel painted, 1 reused" in out.output, out.output
    story.write_text(story.read_text() + "        infusion: {unet: own}\n")
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and "1 panel painted, 1 reused" in out.output, out.output
    story.write_text(story.read_text().replace("unet: own", "unet: nowhere"))
    out = runner.invoke(app, args)
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.exit_code == 2 and len(lines) == 1, out.output
    assert "s.yaml" in lines[0] and "nowhere" in lines[0] and "Traceback" not in out.output


def test_the_model_s_recommended_settings_go_with_its_infusion_unet(model, tmp_path):
    ws = tiny_workspace(tmp_path / "w")
    story = ws.stories_dir / "s.yaml"
    story.write_text(
        "title: T\npages:\n  - panels:\n      - prompt: '[pip] on grass'\n"
        "        characters: [{name: pip}]\n"
        "      - prompt: '[pip] on sand'\n        characters: [{name: pip}]\n"
        "        infusion: {unet: own}\n"
    )

    def jobs(config=""):
        ws.config_path.write_text(f"[model]\nname = '{model.as_posix()}'\n{config}")
        here = Workspace.load(ws.root)
        with Library.open(here.db_path, here.cache_dir) as library:
            return plan(here, story, library).jobs

    auto, own = jobs()
    assert auto.infusion.levels == ["attention", "blocks"] and auto.infusion.attention.weight == 2
    assert auto.infusion_unet.endswith("unet-infusion")
    # unet = own: the model's recommendations do not apply, the defaults do
    assert own.infusion.levels == InfusionSettings().levels and own.infusion_unet == ""
    # what the person sets wins over the model's recommendation, field by field
    auto, _ = jobs("[infusion]\nlevels = ['blocks']\n")
    assert auto.infusion.levels == ["blocks"] and auto.infusion.attention.weight == 2
    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    (bad / "comicgen.json").write_text(
        json.dumps({"infusion_unet": "unet-infusion", "infusion": {"levels": ["nose"]}})
    )
    ws.config_path.write_text(f"[model]\nname = '{bad.as_posix()}'\n")
    out = CliRunner().invoke(app, ["render", "stories/s.yaml", "--workspace", str(ws.root)])
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.exit_code == 2 and len(lines) == 1 and "infusion settings" in lines[0], out.output


def test_install_writes_a_float16_unet_without_the_training_machine_s_path(tmp_path):
    from toyworld.infusion_unet import INSTALLED, install

    trained = trained_unet(tmp_path / "run" / "unet")
    folder = tmp_path / "model"
    shutil.copytree(TINY, folder)
    (folder / INSTALLED).mkdir()
    (folder / INSTALLED / "stale.txt").write_text("from an earlier install")
    dest = install(trained, folder, {"levels": ["attention"]})
    config = json.loads((dest / "config.json").read_text())
    assert "_name_or_path" not in config
    assert not (dest / "stale.txt").exists()  # replaced whole
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp folder left
    from safetensors.torch import load_file

    weights = load_file(dest / "diffusion_pytorch_model.safetensors")
    assert {w.dtype for w in weights.values()} == {torch.float16}
    data = json.loads((folder / "comicgen.json").read_text())
    assert data["infusion_unet"] == INSTALLED and data["infusion"] == {"levels": ["attention"]}
