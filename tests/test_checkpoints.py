"""Single-file checkpoints: tiny SD 1.5, SD 2.1 (v-prediction) and SDXL pipelines saved in
the original one-file layout load through diffusers' single-file loading and paint the
same pictures as the folders they came from; bad files are one line and exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from comicgen.checkpoints import FAMILIES, clip_tokenizer, family_folder
from comicgen.cli import app
from comicgen.errors import ModelError
from comicgen.painter import Painter, PaintJob, inspect_model
from comicgen.settings import ModelSettings
from tests.helpers import tiny_workspace
from tests.support.checkpoints import save_single_file
from tests.support.published import PUBLISHED
from tests.support.tiny import tiny_model_dir, tiny_pipeline

DETECTED = {"sd15": "sd15", "sd21": "sd21-v", "sdxl": "sdxl"}


@pytest.fixture(scope="module")
def single_files(tmp_path_factory):
    """layout -> (folder, single file) for the three families (sd15 also as .ckpt)."""
    root = tmp_path_factory.mktemp("single")
    out = {}
    for layout in ("sd15", "sd21", "sdxl"):
        suffix = ".ckpt" if layout == "sd15" else ".safetensors"
        path = save_single_file(tiny_pipeline(layout), root / f"{layout}{suffix}", layout)
        out[layout] = (tiny_model_dir(layout), path)
    return out


def paint(settings: ModelSettings, **kw):
    painter = Painter.load(settings)
    job = PaintJob(prompt="a red cat on grass", width=64, height=64, steps=2, guidance=4.0, seed=7)
    return np.asarray(painter.paint(job), dtype=np.int16), painter


@pytest.mark.parametrize("layout", ["sd15", "sd21", "sdxl"])
def test_single_file_paints_like_its_folder(single_files, layout):
    folder, path = single_files[layout]
    info = inspect_model(str(path), settings=ModelSettings(name=str(path), config=str(folder)))
    assert info.source.kind == "file"
    assert info.source.family == DETECTED[layout]  # read from the weights
    from_folder, _ = paint(ModelSettings(name=str(folder), device="cpu"))
    from_file, painter = paint(ModelSettings(name=str(path), config=str(folder), device="cpu"))
    assert np.array_equal(from_folder, from_file)
    if layout == "sd21":
        assert painter.pipe.scheduler.config.prediction_type == "v_prediction"
    assert painter.info.fingerprint != inspect_model(str(folder)).fingerprint


def test_detected_family_picks_the_shipped_configs(single_files):
    sizes = {"sd15": 512, "sd21": 768, "sdxl": 1024}
    for layout, (_folder, path) in single_files.items():
        info = inspect_model(str(path))
        assert info.source.family == DETECTED[layout]
        assert info.source.config == str(family_folder(DETECTED[layout]))
        assert info.native_size == sizes[layout]
    # the memory plan (doctor) sizes a single file by its family's shipped configs
    from comicgen.modelsize import model_size

    size = model_size(str(single_files["sdxl"][1]))
    assert size is not None and size.family == "sdxl" and size.params["unet"] == 2_567_463_684
    # an explicit family wins over the detection
    path = single_files["sd21"][1]
    info = inspect_model(str(path), settings=ModelSettings(name=str(path), family="sd21"))
    assert (info.source.family, info.native_size) == ("sd21", 512)


def test_tiny_weights_in_full_size_configs_are_one_clear_error(single_files):
    _folder, path = single_files["sd15"]
    with pytest.raises(ModelError) as caught:
        Painter.load(ModelSettings(name=str(path), device="cpu"))
    line = caught.value.line()
    assert "\n" not in line and "not a checkpoint diffusers understands" in line
    assert "SD 1.x" in line


def test_shipped_configs_have_the_families_layouts():
    """The shipped U-Net configs have the block layout of the tiny families (which copy
    the real ones with channels cut by 8)."""
    same = (
        "down_block_types",
        "up_block_types",
        "layers_per_block",
        "cross_attention_dim",
        "attention_head_dim",
        "use_linear_projection",
        "addition_embed_type",
        "projection_class_embeddings_input_dim",
    )
    import inspect

    from diffusers import UNet2DConditionModel

    params = inspect.signature(UNet2DConditionModel.__init__).parameters.items()
    defaults = json.loads(json.dumps({k: p.default for k, p in params if k != "self"}))

    def config(folder):  # with diffusers' defaults filled in
        return defaults | json.loads((folder / "unet" / "config.json").read_text())

    for layout, family in DETECTED.items():
        shipped, tiny = config(family_folder(family)), config(tiny_model_dir(layout))
        for key in same:
            assert shipped.get(key) == tiny.get(key), (family, key)
        assert [c // 8 for c in shipped["block_out_channels"]] == tiny["block_out_channels"]
    for family in FAMILIES:
        index = json.loads((family_folder(family) / "model_index.json").read_text())
        assert index["_class_name"].startswith("StableDiffusion")


def test_the_clip_tokenizer_is_built_offline_from_the_shipped_vocabulary():
    tokenizer = clip_tokenizer()
    assert len(tokenizer) == 49408
    # the ids every SD 1.x/2.x/SDXL text encoder was trained with
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert clip_tokenizer("!").pad_token_id == 0


def test_a_vae_override_is_used(single_files, tmp_path):
    folder, path = single_files["sd15"]
    base = ModelSettings(name=str(path), config=str(folder), device="cpu")
    plain, _ = paint(base)
    # the same VAE as a folder: the same picture; another model's VAE: another one
    same, _ = paint(base.model_copy(update={"vae": str(folder)}))
    assert np.array_equal(plain, same)
    other_folder = tiny_model_dir("sd15", seed=1)
    other, painter = paint(base.model_copy(update={"vae": str(other_folder)}))
    assert not np.array_equal(plain, other)
    assert painter.info.fingerprint != inspect_model(str(path), settings=base).fingerprint


def run_render(ws, model_line: str):
    (ws.root / "comicgen.toml").write_text(f"[model]\n{model_line}\n[render]\nsteps = 2\n")
    (ws.stories_dir / "s.yaml").write_text(
        "title: T\npages:\n  - panels:\n      - prompt: a tree\n"
    )
    return CliRunner().invoke(app, ["render", "stories/s.yaml", "--workspace", str(ws.root)])


def one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0], lines[0]


def test_corrupt_or_unknown_files_are_one_line_and_exit_2(tmp_path):
    import torch
    from safetensors.torch import save_file

    ws = tiny_workspace(tmp_path / "w")
    (ws.root / "corrupt.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    one_line_error(run_render(ws, 'name = "corrupt.safetensors"'), "not a checkpoint", "corrupt")
    save_file({"some.other.weight": torch.zeros(2, 2)}, str(ws.root / "other.safetensors"))
    one_line_error(run_render(ws, 'name = "other.safetensors"'), "no Stable Diffusion U-Net")
    (ws.root / "junk.ckpt").write_bytes(b"not a pickle at all")
    one_line_error(run_render(ws, 'name = "junk.ckpt"'), "unreadable .ckpt")
    one_line_error(run_render(ws, 'name = "missing.safetensors"'), "does not exist")
    one_line_error(run_render(ws, 'name = "bundled:toyworld"\nfamily = "sd3"'), "family")


@pytest.mark.parametrize("family", list(PUBLISHED))
def test_shipped_configs_build_the_published_models(family):
    """Every shipped component, built from its config on the meta device (no memory),
    has the parameter count of the published model of its family."""
    import importlib

    from accelerate import init_empty_weights

    folder = family_folder(family)
    index = json.loads((folder / "model_index.json").read_text())
    counts = {}
    for name in PUBLISHED[family]:
        library, cls_name = index[name]
        cls = getattr(importlib.import_module(library), cls_name)
        with init_empty_weights():
            if library == "diffusers":
                model = cls.from_config(cls.load_config(folder / name))
            else:
                model = cls(cls.config_class.from_pretrained(folder / name))
        counts[name] = sum(p.numel() for p in model.parameters())
    assert counts == PUBLISHED[family]
