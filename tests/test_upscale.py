"""The upscale stage: loading any spandrel model, caching upscaled panels, the bundled x4."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from comicgen.cli import app
from comicgen.errors import ModelError
from comicgen.library import Library
from comicgen.upscale import default_upscaler, load_upscaler, upscaled_key
from tests.helpers import cached_panel_files, tiny_workspace

STORY = """\
title: Up
pages:
  - panels:
      - prompt: "{pip} on the left, grass, day sky"
        characters: [{name: pip, position: left}]
        dialogue: [{speaker: pip, text: "Hi!"}]
      - prompt: a house, night sky
"""


def tiny_net(path, scale: int = 2, seed: int = 0):
    """A tiny random Real-ESRGAN compact network, saved the way its trainers save it."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=1, upscale=scale)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_any_spandrel_model_loads_and_upscales(tmp_path, suffix):
    path = tiny_net(tmp_path / f"net{suffix}", scale=2)
    up = load_upscaler(str(path))
    assert up is not None and up.scale == 2 and up.arch == "Compact"
    out = up.upscale(Image.new("RGBA", (24, 16), (10, 200, 30, 128)))
    assert out.mode == "RGB" and out.size == (48, 32)
    # relative to the workspace, and the same weights give the same fingerprint
    again = load_upscaler(path.name, base=tmp_path)
    assert again.fingerprint == up.fingerprint
    other = load_upscaler(str(tiny_net(tmp_path / f"other{suffix}", scale=2, seed=1)))
    assert other.fingerprint != up.fingerprint


def test_large_images_are_tiled_like_whole_ones(tmp_path):
    """Tiles with context give the same pixels as one pass (a 3-layer net sees 3 pixels)."""
    up = load_upscaler(str(tiny_net(tmp_path / "net.pth", scale=2)))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (300, 280, 3), dtype=np.uint8))
    tiled = np.asarray(up.upscale(image))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        whole = up.descriptor(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert tiled.shape == (600, 560, 3)
    assert np.abs(tiled.astype(float) - np.round(whole * 255)).max() <= 1


def test_none_is_no_upscaler():
    assert load_upscaler("none") is None
    assert load_upscaler(" None ") is None
    assert default_upscaler("bundled:toyworld") == "bundled:toyworld-x4"
    assert default_upscaler("stable-diffusion-v1-5/stable-diffusion-v1-5") == "none"


def one_line(exc: pytest.ExceptionInfo) -> str:
    line = exc.value.line()
    assert "\n" not in line
    return line


def test_errors_a_person_can_cause(tmp_path):
    with pytest.raises(ModelError) as exc:
        load_upscaler("models/missing.pth", base=tmp_path)
    assert "upscaler file 'models/missing.pth' does not exist" in one_line(exc)
    with pytest.raises(ModelError) as exc:
        load_upscaler("bundled:nope")
    assert "no bundled upscaler 'nope'" in one_line(exc) and "toyworld-x4" in one_line(exc)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(ModelError) as exc:
        load_upscaler(str(junk))
    assert "cannot be read as model weights" in one_line(exc)
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, foreign)
    with pytest.raises(ModelError) as exc:
        load_upscaler(str(foreign))
    assert "not a model architecture spandrel knows" in one_line(exc)


def test_a_bad_setting_is_one_line(tmp_path):
    ws = tiny_workspace(tmp_path / "comic")
    (ws.stories_dir / "up.yaml").write_text(STORY, encoding="utf-8")
    (ws.root / "junk.pth").write_bytes(b"junk")
    for value, expected in (
        ("missing.pth", "upscaler file 'missing.pth' does not exist"),
        ("junk.pth", "upscaler 'junk.pth' cannot be read as model weights"),
        ("", "empty upscaler; write 'none' to turn upscaling off"),
    ):
        ws.config_path.write_text(
            ws.config_path.read_text().replace("[render]\n", f"[render]\nupscale = '{value}'\n", 1)
        )
        result = CliRunner().invoke(app, ["render", "stories/up.yaml", "--workspace", str(ws.root)])
        assert result.exit_code == 2, result.output
        assert expected in result.output.replace("\n", " "), result.output
        assert "Traceback" not in result.output
        ws.config_path.write_text(
            ws.config_path.read_text().replace(f"upscale = '{value}'\n", "", 1)
        )
    assert not list((ws.build_dir).glob("up/page-*.png"))


def render(ws) -> str:
    result = CliRunner().invoke(app, ["render", "stories/up.yaml", "--workspace", str(ws.root)])
    assert result.exit_code == 0, result.output
    return result.output


def set_upscale(ws, value: str) -> None:
    text = ws.config_path.read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("upscale ="))
    ws.config_path.write_text(text.replace("[render]\n", f"[render]\nupscale = '{value}'\n", 1))


def test_render_caches_upscaled_panels_and_a_new_upscaler_repaints_nothing(tmp_path):
    ws = tiny_workspace(tmp_path / "comic")
    (ws.stories_dir / "up.yaml").write_text(STORY, encoding="utf-8")
    tiny_net(ws.root / "x2.safetensors", scale=2)
    tiny_net(ws.root / "x4.pth", scale=4)
    panels = ws.build_dir / "up" / "panels"

    # no upscaler (the default for a model other than the bundled one)
    assert "2 panels painted, 0 reused" in render(ws)
    with Image.open(panels / "p01-1.png") as im:
        painted_size = im.size
    painted_keys = {p.stem for p in cached_panel_files(ws)}
    assert len(painted_keys) == 2

    set_upscale(ws, "x2.safetensors")
    out = render(ws)
    assert "0 panels painted, 2 reused" in out and "upscaling 2 panels" in out
    with Image.open(panels / "p01-1.png") as im:
        assert im.size == (painted_size[0] * 2, painted_size[1] * 2)
    x2_files = {p.stem for p in cached_panel_files(ws)}
    assert painted_keys < x2_files and len(x2_files) == 4
    # the upscaled panel is cached under the painted key + the upscaler's fingerprint
    up = load_upscaler("x2.safetensors", base=ws.root)
    with Library.open(ws.db_path, ws.cache_dir) as lib:
        for key in painted_keys:
            assert lib.cache_get(upscaled_key(key, up.fingerprint)) is not None
    # pages show the upscaled panel
    html = (ws.build_dir / "up" / "page-01.html").read_text(encoding="utf-8")
    assert "panels/p01-1.png" in html

    # the same upscaler again: nothing painted, nothing upscaled
    out = render(ws)
    assert "0 panels painted, 2 reused" in out and "upscaling" not in out

    # another upscaler: re-upscaled, never repainted; the painted panels stay cached
    set_upscale(ws, "x4.pth")
    out = render(ws)
    assert "0 panels painted, 2 reused" in out and "upscaling 2 panels" in out
    with Image.open(panels / "p01-1.png") as im:
        assert im.size == (painted_size[0] * 4, painted_size[1] * 4)
    assert painted_keys < {p.stem for p in cached_panel_files(ws)}

    # and back to none: the painted panel again
    set_upscale(ws, "none")
    assert "0 panels painted, 2 reused" in render(ws)
    with Image.open(panels / "p01-1.png") as im:
        assert im.size == painted_size


def test_a_story_can_choose_its_upscaler(tmp_path):
    ws = tiny_workspace(tmp_path / "comic")
    tiny_net(ws.root / "x2.pth", scale=2)
    story = STORY.replace("title: Up\n", "title: Up\nsettings:\n  upscale: x2.pth\n")
    (ws.stories_dir / "up.yaml").write_text(story, encoding="utf-8")
    assert "upscaling 2 panels" in render(ws)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_bundled_upscaler_beats_lanczos_on_fresh_renders():
    from toyworld import world as W

    up = load_upscaler("bundled:toyworld-x4")
    assert up.scale == 4 and up.arch == "Compact"
    gains = []
    for i in range(4):
        scene = W.sample_scene(W.scene_rng(9090, i))
        hr = np.asarray(W.render(scene, 256))
        small = W.render(scene, 64)
        lanczos = np.asarray(small.resize((256, 256), Image.Resampling.LANCZOS))
        ours = np.asarray(up.upscale(small))
        gains.append(psnr(ours, hr) - psnr(lanczos, hr))
    assert min(gains) > 0 and np.mean(gains) > 1.0, gains


def test_doctor_names_the_upscaler(tmp_path):
    ws = tiny_workspace(tmp_path / "comic")
    tiny_net(ws.root / "x2.pth", scale=2)
    set_upscale(ws, "x2.pth")
    result = CliRunner().invoke(
        app, ["doctor", "--workspace", str(ws.root)], env={"COLUMNS": "200"}
    )
    assert "x2.pth: Compact x2" in result.output, result.output
    set_upscale(ws, "gone.pth")
    result = CliRunner().invoke(
        app, ["doctor", "--workspace", str(ws.root)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1 and "upscaler file 'gone.pth' does not exist" in result.output
