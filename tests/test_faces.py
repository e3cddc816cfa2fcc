"""The face pass (comicgen.faces): each named character's face repainted in a close crop
from its own clause of the prompt, inside a square found from its box; off by "none"; its
model in the panel's key."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from comicgen.cli import app
from comicgen.errors import ModelError
from comicgen.faces import (
    FACE_STRENGTH,
    PASTE,
    Face,
    FacePainter,
    character_clause,
    crop_box,
    face_square,
    panel_faces,
)
from comicgen.infusion.refs import position_box
from comicgen.jobs import CharacterSpec, plan
from comicgen.library import Library
from comicgen.models import inspect_model, resolve_faces
from comicgen.painter import Painter, PaintJob
from comicgen.settings import ModelSettings
from comicgen.workspace import Workspace
from tests.helpers import tiny_workspace
from tests.support.tiny import TINY
from tests.test_infusion_unet import trained_unet


def face_model(folder, seed=1):
    """A stand-in trained face model: the tiny U-Net with its weights moved, in unet/."""
    trained_unet(folder / "unet", seed)
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The tiny model with a face model it names in comicgen.json."""
    folder = tmp_path_factory.mktemp("m") / "model"
    shutil.copytree(TINY, folder)
    face_model(folder / "faces")
    (folder / "comicgen.json").write_text(json.dumps({"faces": "faces"}))
    return folder


def test_the_face_square_stands_on_the_box_inside_the_panel():
    for w, h in ((64, 64), (96, 64), (64, 128), (512, 768)):
        for pos in ("left", "center", "right"):
            x0, y0, x1, y1 = face_square(position_box(pos), w, h)
            assert x1 - x0 == pytest.approx(y1 - y0) == pytest.approx(0.46 * min(w, h))
            assert 0 <= x0 and x1 <= w and 0 <= y0 and y1 <= h
            bx0, _, bx1, by1 = position_box(pos)
            assert (x0 + x1) / 2 == pytest.approx((bx0 + bx1) / 2 * w)
            assert y1 == pytest.approx(by1 * h)
    # a box at the panel's edge: the square moves inside
    assert face_square((0.0, 0.0, 0.1, 0.2), 100, 100) == (0.0, 0.0, 46.0, 46.0)


def test_each_character_gets_its_own_clause():
    prompt = (
        "a red circle character looking sad on the left, "
        "a blue square character facing right, grass"
    )
    assert character_clause(prompt, "a red circle character") == (
        "a red circle character looking sad on the left"
    )
    assert character_clause(prompt, "A blue square character") == (
        "a blue square character facing right"
    )
    assert character_clause(prompt, "a green triangle character") == ""
    assert character_clause(prompt, "") == ""
    specs = [
        CharacterSpec("pip", "a red circle character", [], position="left"),
        CharacterSpec("bo", "a blue square character", [], box=(0.5, 0.1, 0.9, 0.9)),
        CharacterSpec("tri", "a green triangle character", []),  # not in the prompt: no face
    ]
    assert panel_faces(prompt, specs) == (
        Face("a red circle character looking sad on the left", position_box("left"), "pip"),
        Face("a blue square character facing right", (0.5, 0.1, 0.9, 0.9), "bo"),
    )


def test_only_the_face_square_is_repainted(model):
    painter = Painter.load(ModelSettings(name=str(model), device="cpu"))
    job = dict(prompt="a red circle character looking sad on the left, grass", width=64,
               height=64, steps=2, guidance=4.0, seed=3)  # fmt: skip
    plain = np.asarray(painter.paint(PaintJob(**job)), dtype=np.int16)
    face = Face("a red circle character looking sad on the left", position_box("left"))
    repainted = painter.paint(PaintJob(**job, faces=[face], face_model=str(model / "faces")))
    diff = np.abs(np.asarray(repainted, dtype=np.int16) - plain).max(axis=2)
    x0, y0, x1, y1 = (round(v) for v in face_square(face.box, 64, 64))
    inside = np.zeros_like(diff, dtype=bool)
    inside[y0:y1, x0:x1] = True
    assert diff[inside].max() > 8, "the face pass changed nothing"
    assert diff[~inside].max() == 0, "the face pass touched pixels outside the face square"
    # the seam is soft: the square's edge keeps (almost) the painted pixels
    assert diff[y0:y1, x0].max() <= 2 and diff[y0, x0:x1].max() <= 2
    again = painter.paint(PaintJob(**job, faces=[face], face_model=str(model / "faces")))
    assert np.array_equal(np.asarray(again), np.asarray(repainted))  # seeded
    # the job's strength, not the first one's (8 steps: at 2, both start from the last one)
    job8 = dict(job, steps=8, faces=[face], face_model=str(model / "faces"))
    strong, weak = (painter.paint(PaintJob(**job8, face_strength=s)) for s in (0.75, 0.4))
    assert weak.tobytes() != strong.tobytes()


def test_a_face_painter_reads_an_own_text_encoder_and_vae(model, tmp_path):
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel

    folder = shutil.copytree(model / "faces", tmp_path / "faces")
    CLIPTextModel.from_pretrained(TINY, subfolder="text_encoder").save_pretrained(
        folder / "text_encoder"
    )
    AutoencoderKL.from_pretrained(TINY, subfolder="vae").save_pretrained(folder / "vae")
    painter = Painter.load(ModelSettings(name=str(model), device="cpu"))
    faces = FacePainter(painter.pipe, folder)
    assert faces.pipe.text_encoder is not painter.pipe.text_encoder
    assert faces.pipe.vae is not painter.pipe.vae
    own = FacePainter(painter.pipe, None)  # faces = "own": the panel's model
    assert own.pipe.unet is painter.pipe.unet and own.pipe.vae is painter.pipe.vae
    image = Image.new("RGB", (64, 96), (200, 180, 90))
    out = faces.repaint(image, [Face("a cat", position_box("right"))], seed=1, steps=2, guidance=3)
    assert out.size == image.size and out.tobytes() != image.tobytes()


def test_the_setting_names_the_model_s_faces_none_or_a_folder(model, tmp_path):
    info = inspect_model(str(model))
    assert info.faces == model / "faces"
    assert resolve_faces("auto", info, None) == model / "faces"
    assert resolve_faces(None, info, None) is None  # the default: off
    assert resolve_faces("none", info, None) is None
    assert resolve_faces("own", info, None) == "own"
    assert resolve_faces("auto", inspect_model(str(TINY)), None) is None  # ships none
    face_model(tmp_path / "mine")
    assert resolve_faces("mine", info, tmp_path) == (tmp_path / "mine").resolve()
    with pytest.raises(ModelError, match="not a face-model folder"):
        resolve_faces("nowhere", info, tmp_path)
    # the face model is not part of the model's fingerprint (plain panels keep their keys)
    other = shutil.copytree(model, tmp_path / "other")
    face_model(other / "faces", seed=5)
    assert inspect_model(str(other)).fingerprint == info.fingerprint
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "comicgen.json").write_text(json.dumps({"faces": "gone"}))
    with pytest.raises(ModelError, match="faces 'gone'"):
        inspect_model(str(broken))


def test_render_keys_and_errors(model, tmp_path, monkeypatch):
    ws = tiny_workspace(tmp_path / "w")
    story = ws.stories_dir / "s.yaml"
    story.write_text(
        "title: T\npages:\n  - panels:\n      - prompt: a tree\n"
        "      - prompt: '{pip} looking sad, grass'\n        characters: [{name: pip}]\n"
    )

    def config(render=""):
        ws.config_path.write_text(
            f"[model]\nname = '{model.as_posix()}'\n[render]\nsteps = 2\n{render}[page]\ndpi = 48\n"
        )

    def jobs():
        here = Workspace.load(ws.root)
        with Library.open(here.db_path, here.cache_dir) as library:
            return plan(here, story, library).jobs

    config()  # on by default: "auto", the face model the model ships
    assert jobs()[1].face_model.endswith("faces")
    config('faces = "auto"\n')
    tree, pip = jobs()
    assert tree.faces == () and tree.face_model == ""
    assert [f.clause for f in pip.faces] == ["a red circle character looking sad"]
    assert pip.face_model.endswith("faces")
    runner = CliRunner()
    args = ["render", "stories/s.yaml", "--workspace", str(ws.root)]
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and "2 panels painted, 0 reused" in out.output, out.output
    # a new face model repaints the panel with a face, not the other
    face_model(model / "faces", seed=2)
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and "1 panel painted, 1 reused" in out.output, out.output
    config('faces = "auto"\nface_strength = 0.4\n')
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and "1 panel painted, 1 reused" in out.output, out.output
    import comicgen.jobs

    monkeypatch.setattr(comicgen.jobs, "PASTE", (0.2, 0.6))  # another paste window: the same
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and "1 panel painted, 1 reused" in out.output, out.output
    config('faces = "none"\n')
    assert jobs()[1].face_model == ""
    config()  # a story's "none" turns off the workspace's "auto"
    text = story.read_text()
    story.write_text(text.replace("pages:", "settings: {faces: none}\npages:"))
    assert jobs()[1].face_model == ""
    story.write_text(text)
    config('faces = "own"\n')  # the panel's model repaints the crop
    own = jobs()[1]
    assert own.face_model == "own" and own.face_model_id == inspect_model(str(model)).fingerprint
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and "1 panel painted, 1 reused" in out.output, out.output
    config('faces = "nowhere"\n')
    out = runner.invoke(app, args)
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.exit_code == 2 and len(lines) == 1, out.output
    assert "s.yaml" in lines[0] and "nowhere" in lines[0] and "Traceback" not in out.output
    config('faces = "auto"\n')  # a face model's settings that do not parse: one line
    (model / "faces" / "comicgen.json").write_text('{"infusion": {"weight": "lots"}}')
    try:
        out = runner.invoke(app, args)
    finally:
        (model / "faces" / "comicgen.json").unlink()
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.exit_code == 2 and len(lines) == 1, out.output
    assert "comicgen.json" in lines[0] and "Traceback" not in out.output


def test_crop_box_moves_a_character_into_its_face_square():
    box = position_box("left")
    left, top, x1, _ = face_square(box, 64, 64)
    square = (left, top, x1 - left)
    cx0, cy0, cx1, cy1 = crop_box(box, square, 64, 64)
    # the character's box, in the crop's fractions: its bottom edge is the crop's
    assert cy1 == pytest.approx(1.0) and 0 <= cx0 < cx1 <= 1 and 0 <= cy0 < cy1
    assert (cx0 + cx1) / 2 == pytest.approx(0.5, abs=0.02)
    assert crop_box((0.9, 0.0, 1.0, 0.1), square, 64, 64) is None  # misses the crop


def test_an_infused_face_pass_reads_the_sheet_and_weight_0_does_not(model):
    from comicgen.infusion import CharacterRefs
    from comicgen.settings import InfusionSettings

    painter = Painter.load(ModelSettings(name=str(model), device="cpu"))
    faces = FacePainter(painter.pipe, model / "faces")
    image = Image.new("RGB", (64, 64), (90, 150, 220))
    face = Face("a red circle character looking sad", position_box("center"))
    sheet = Image.new("RGB", (64, 64), "white")
    sheet.paste((200, 30, 30), (20, 10, 44, 60))
    refs = [CharacterRefs("pip", [sheet], description="a red circle character")]
    call = dict(seed=2, steps=4, guidance=3.0)
    plain = faces.repaint(image, [face], **call)
    off = faces.repaint(image, [face], **call, refs=refs, infusion=InfusionSettings(weight=0))
    assert off.tobytes() == plain.tobytes()  # weight 0: the plain face pass, bit for bit
    on = faces.repaint(image, [face], **call, refs=refs, infusion=InfusionSettings())
    assert on.size == image.size and on.tobytes() != plain.tobytes()
    again = faces.repaint(image, [face], **call, refs=refs, infusion=InfusionSettings())
    assert again.tobytes() == on.tobytes()  # seeded, the feature cache changes nothing


def nearly_same(a, b) -> bool:
    """The same picture to the rounding of a pixel value here and there: repainting the
    same infused crop twice can differ by one in a few values (seen at strength 0.55, not
    0.75; floating-point sums in another order, not yet traced)."""
    diff = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16))
    return diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_a_face_model_trained_with_the_sheet_reads_it_on_infused_panels(model, tmp_path):
    from comicgen.infusion import CharacterRefs
    from comicgen.settings import InfusionSettings

    infused = tmp_path / "faces-infused"
    shutil.copytree(model / "faces", infused)
    trained_unet(infused / "unet-infusion", seed=5)
    settings = {"levels": ["attention"]}
    (infused / "comicgen.json").write_text(
        json.dumps({"infusion_unet": "unet-infusion", "infusion": settings})
    )
    painter = Painter.load(ModelSettings(name=str(model), device="cpu"))
    sheet = Image.new("RGB", (64, 64), "white")
    sheet.paste((200, 30, 30), (20, 10, 44, 60))
    pip = CharacterRefs("pip", [sheet], description="a red circle character", position="left")
    face = Face("a red circle character looking sad on the left", position_box("left"), "pip")
    job = dict(prompt="a red circle character looking sad on the left, grass", width=64,
               height=64, steps=4, guidance=4.0, seed=3, characters=[pip], faces=[face],
               infusion=InfusionSettings(weight=0))  # fmt: skip
    # on a panel painted plain, the plain face U-Net repaints, as without the file
    plain = painter.paint(PaintJob(**job, face_model=str(model / "faces")))
    assert painter.paint(PaintJob(**job, face_model=str(infused))).tobytes() == plain.tobytes()
    job["infusion"] = InfusionSettings()
    untrained = painter.paint(PaintJob(**job, face_model=str(model / "faces")))
    trained = painter.paint(PaintJob(**job, face_model=str(infused)))
    assert trained.tobytes() != untrained.tobytes()  # the sheet and the infused U-Net
    assert nearly_same(painter.paint(PaintJob(**job, face_model=str(infused))), trained)
    faces = painter._face_painters[str(infused)]
    assert faces.infusion.levels == ["attention"]  # the face model's own settings
    assert faces.infused_pipe.unet is not faces.pipe.unet
    # the same U-Net, infused with the face model's settings by hand: the same picture
    alone = FacePainter(painter.pipe, model / "faces")
    alone.pipe.unet = faces.infused_pipe.unet
    image = painter.paint(PaintJob(**{**job, "faces": ()}))
    call = dict(seed=3, steps=4, guidance=4.0, strength=FACE_STRENGTH)  # the pass's default
    by_hand = alone.repaint(image, [face], **call, refs=[pip], infusion=faces.infusion)
    assert nearly_same(by_hand, trained)
    # a strength of its own for crops with a sheet; crops without keep the pass's
    data = {"infusion_unet": "unet-infusion", "infusion": settings, "strength": 0.3}
    (infused / "comicgen.json").write_text(json.dumps(data))
    weak = FacePainter(painter.pipe, infused)
    assert weak.infused_strength == 0.3
    weaker = weak.repaint(image, [face], **call, refs=[pip], infusion=weak.infusion)
    assert weaker.tobytes() != by_hand.tobytes()
    plain_crops = FacePainter(painter.pipe, model / "faces").repaint(image, [face], **call)
    assert weak.repaint(image, [face], **call).tobytes() == plain_crops.tobytes()
    # and a paste window of its own for them ("paste"); crops without a sheet keep the pass's
    data["paste"] = [0.05, 0.2]
    (infused / "comicgen.json").write_text(json.dumps(data))
    narrow = FacePainter(painter.pipe, infused)
    assert narrow.infused_paste == (0.05, 0.2) and narrow.paste == PASTE
    narrowed = narrow.repaint(image, [face], **call, refs=[pip], infusion=narrow.infusion)
    assert narrowed.tobytes() != weaker.tobytes()
    assert narrow.repaint(image, [face], **call).tobytes() == plain_crops.tobytes()
    bad_files = (
        '{"infusion": {"levels": ["nowhere"]}}',
        '{"infusion_unet": "no", "infusion": {}}',
        '{"infusion": {}, "strength": 2}',
        '{"infusion": {}, "paste": [0.9, 0.2]}',
        '{"infusion": {}, "paste": [0.5]}',
    )
    for bad in bad_files:
        (infused / "comicgen.json").write_text(bad)
        with pytest.raises(ModelError, match="comicgen.json"):
            FacePainter(painter.pipe, infused)
