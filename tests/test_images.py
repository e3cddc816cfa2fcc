"""Loading arbitrary image files: every bad case of issue 6 item 2, masks and sheet cutting."""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections import deque

import numpy as np
import pytest
from PIL import Image, ImageDraw

from comicgen.errors import ComicgenError
from comicgen.images import (
    MAX_SIDE,
    character_mask,
    cut_sheet,
    decode_png,
    encode_png,
    flatten,
    flood_from_border,
    load_image,
    normalise,
    parse_grid,
    pixel_sha256,
    trim_border,
)


def disc(size=(80, 80), colour=(220, 30, 30), background=(255, 255, 255), mode="RGB"):
    img = Image.new(mode, size, background)
    w, h = size
    ImageDraw.Draw(img).ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=colour)
    return img


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def one_line(exc: ComicgenError) -> str:
    line = exc.line()
    assert "\n" not in line
    return line


# -- refused with one clear line naming the file ---------------------------------------


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are my notes, not a picture")
    with pytest.raises(ComicgenError) as info:
        load_image(path, display="notes.png")
    line = one_line(info.value)
    assert line.startswith("notes.png: ")
    assert "not an image" in line


def test_truncated_image(tmp_path):
    buffer = io.BytesIO()
    Image.effect_noise((128, 128), 60).convert("RGB").save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ComicgenError) as info:
        load_image(path)
    line = one_line(info.value)
    assert str(path) in line
    assert "truncated" in line


def test_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    Image.effect_noise((128, 128), 60).convert("RGB").save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[:400])
    with pytest.raises(ComicgenError) as info:
        load_image(path, display="cut.jpg")
    assert one_line(info.value).startswith("cut.jpg: ")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ComicgenError, match=r"empty\.png: the file is empty"):
        load_image(path, display="empty.png")


def test_zero_sized_image(tmp_path):
    path = tmp_path / "zero.png"
    path.write_bytes(png_header_only(0, 0))
    with pytest.raises(ComicgenError) as info:
        load_image(path, display="zero.png")
    assert one_line(info.value).startswith("zero.png: ")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ComicgenError, match="no such image file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ComicgenError, match="not a file"):
        load_image(tmp_path)


def test_decompression_bomb_20000x20000_refused(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(20000, 20000))
    assert path.stat().st_size < 200
    with pytest.raises(ComicgenError) as info:
        load_image(path, display="bomb.png")
    line = one_line(info.value)
    assert line.startswith("bomb.png: refused")
    assert "decompression bomb" in line


def test_image_over_40_megapixels_refused_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(8000, 6000))  # 48 MP: under Pillow's own limit
    with pytest.raises(ComicgenError, match=r"8000x6000 pixels"):
        load_image(path)


def test_fully_transparent_image_refused(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(path)
    with pytest.raises(ComicgenError, match="fully transparent"):
        load_image(path)


# -- normalised --------------------------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path, "JPEG", quality=95)  # red
    loaded = load_image(path)
    assert loaded.image.mode == "RGB"
    r, g, b = loaded.image.getpixel((20, 15))
    assert r > 200 and g < 60 and b < 60


def test_la_keeps_its_alpha_as_the_mask(tmp_path):
    img = Image.new("LA", (40, 40), (0, 0))
    ImageDraw.Draw(img).rectangle((10, 10, 29, 29), fill=(90, 255))
    path = tmp_path / "la.png"
    img.save(path)
    loaded = load_image(path)
    assert loaded.image.mode == "RGBA"
    mask = character_mask(loaded.image)
    assert mask.mode == "L"
    assert mask.getbbox() == (10, 10, 30, 30)
    flat = flatten(loaded.image)
    assert flat.mode == "RGB"
    assert flat.getpixel((0, 0)) == (255, 255, 255)  # transparent → white
    assert flat.getpixel((20, 20)) == (90, 90, 90)


def test_palette_images(tmp_path):
    plain = disc().convert("P", palette=Image.Palette.ADAPTIVE)
    plain.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").image.mode == "RGB"

    with_transparency = Image.new("P", (30, 30), 0)
    with_transparency.putpalette([255, 255, 255, 200, 0, 0] + [0] * 762)
    ImageDraw.Draw(with_transparency).rectangle((5, 5, 24, 24), fill=1)
    with_transparency.save(tmp_path / "pt.png", transparency=0)
    loaded = load_image(tmp_path / "pt.png")
    assert loaded.image.mode == "RGBA"
    assert character_mask(loaded.image).getbbox() == (5, 5, 25, 25)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    arr = np.zeros((10, 30), dtype=np.uint16)
    arr[:, 10:20] = 32896  # middle grey in 16 bits
    arr[:, 20:] = 65535
    img = Image.fromarray(arr)
    path = tmp_path / "deep.png"
    img.save(path)
    assert Image.open(path).mode.startswith("I")
    loaded = load_image(path)
    assert loaded.image.mode == "RGB"
    assert loaded.image.getpixel((5, 5)) == (0, 0, 0)
    assert loaded.image.getpixel((15, 5)) == (128, 128, 128)
    assert loaded.image.getpixel((25, 5)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (60, 40), (0, 0, 255))
    ImageDraw.Draw(img).rectangle((0, 0, 29, 39), fill=(255, 0, 0))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "phone.jpg"
    img.save(path, "JPEG", exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.image.size == (40, 60)
    r, _g, b = loaded.image.getpixel((20, 5))  # the left half is now on top
    assert r > 200 and b < 60
    assert "exif" not in loaded.image.info


def test_animated_gif_uses_the_first_frame_with_a_note(tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    loaded = load_image(path, display="anim.gif")
    assert loaded.image.mode == "RGB"
    assert loaded.image.getpixel((10, 10)) == (255, 0, 0)
    assert any("anim.gif" in n and "first frame" in n for n in loaded.notes)


def test_large_image_is_scaled_down_with_a_note(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (MAX_SIDE * 2, 100), (10, 20, 30)).save(path)
    loaded = load_image(path)
    assert max(loaded.image.size) == MAX_SIDE
    assert any("scaled down" in n for n in loaded.notes)


def test_opaque_alpha_is_dropped_and_normalise_is_idempotent():
    opaque = disc(mode="RGBA", background=(255, 255, 255, 255), colour=(0, 0, 200, 255))
    assert normalise(opaque).mode == "RGB"
    soft = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    ImageDraw.Draw(soft).ellipse((4, 4, 27, 27), fill=(200, 40, 40, 128))
    once = normalise(soft)
    assert once.mode == "RGBA"
    twice = normalise(decode_png(encode_png(once).png))
    assert pixel_sha256(twice) == pixel_sha256(once)


def test_encode_png_round_trip():
    img = normalise(disc())
    encoded = encode_png(img)
    assert encoded.png.startswith(b"\x89PNG")
    assert (encoded.width, encoded.height, encoded.mode) == (80, 80, "RGB")
    assert pixel_sha256(decode_png(encoded.png)) == encoded.sha256
    with pytest.raises(ValueError):
        encode_png(Image.new("L", (4, 4)))


# -- masks -------------------------------------------------------------------------------


def test_mask_by_flood_fill_of_the_border_colour():
    img = Image.new("RGB", (60, 60), (250, 250, 245))
    draw = ImageDraw.Draw(img)
    draw.ellipse((10, 10, 49, 49), outline=(0, 0, 0), width=3, fill=None)  # a ring
    mask = character_mask(img)
    assert mask.mode == "L"
    assert mask.getpixel((0, 0)) == 0  # background
    assert mask.getpixel((30, 30)) == 255  # inside the ring: enclosed, part of the figure
    assert mask.getpixel((30, 11)) == 255  # the outline itself


def test_mask_of_a_busy_image_is_everything():
    noise = Image.effect_noise((40, 40), 100).convert("RGB")
    assert character_mask(noise).getextrema() == (255, 255)


def _bfs(candidate: np.ndarray) -> np.ndarray:
    h, w = candidate.shape
    seen = np.zeros_like(candidate)
    queue = deque()
    for y in range(h):
        for x in range(w):
            if (y in (0, h - 1) or x in (0, w - 1)) and candidate[y, x]:
                seen[y, x] = True
                queue.append((y, x))
    while queue:
        y, x = queue.popleft()
        for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
            if 0 <= ny < h and 0 <= nx < w and candidate[ny, nx] and not seen[ny, nx]:
                seen[ny, nx] = True
                queue.append((ny, nx))
    return seen


def test_flood_fill_matches_a_plain_breadth_first_search():
    rng = random.Random(7)
    for _ in range(20):
        h, w = rng.randint(1, 25), rng.randint(1, 25)
        density = rng.choice((0.4, 0.55, 0.7))
        cand = np.array([[rng.random() < density for _ in range(w)] for _ in range(h)])
        assert np.array_equal(flood_from_border(cand), _bfs(cand))
    # a spiral: many turns, one long corridor
    spiral = np.zeros((31, 31), dtype=bool)
    y0, x0, y1, x1 = 0, 0, 30, 30
    while y0 <= y1 and x0 <= x1:
        spiral[y0, x0 : x1 + 1] = True
        spiral[y0 : y1 + 1, x1] = True
        spiral[y1, x0 : x1 + 1] = True
        spiral[y0 + 2 : y1 + 1, x0] = True
        y0, x0, y1, x1 = y0 + 2, x0 + 2, y1 - 2, x1 - 2
    assert np.array_equal(flood_from_border(spiral), _bfs(spiral))


# -- sheets ------------------------------------------------------------------------------


def test_cut_sheet_2x2_trims_and_skips_empty_cells():
    sheet = Image.new("RGB", (200, 160), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.rectangle((30, 20, 60, 60), fill=(200, 0, 0))  # cell 1 (top left)
    draw.ellipse((130, 30, 170, 70), fill=(0, 150, 0))  # cell 2 (top right)
    draw.rectangle((20, 100, 50, 150), fill=(0, 0, 200))  # cell 3 (bottom left)
    notes: list[str] = []
    views = cut_sheet(sheet, "2x2", notes=notes)
    assert len(views) == 3
    assert any("cell 4" in n for n in notes)
    for view, colour in zip(views, [(200, 0, 0), (0, 150, 0), (0, 0, 200)], strict=True):
        assert view.size[0] < 100 and view.size[1] < 80  # trimmed
        assert view.getpixel((0, 0)) == (255, 255, 255)  # a margin of background is kept
        w, h = view.size
        assert view.getpixel((w // 2, h // 2)) == colour
        assert character_mask(view).getpixel((0, 0)) == 0


def test_cut_sheet_without_trim_and_other_grids():
    sheet = Image.new("RGB", (90, 30), (255, 255, 255))
    views = cut_sheet(sheet.copy(), "3x1", trim=False)
    assert [v.size for v in views] == [(30, 30)] * 3
    with pytest.raises(ComicgenError, match="every cell"):
        cut_sheet(sheet, "3x1")
    assert parse_grid("4X2") == (4, 2)
    assert parse_grid(" 1 x 3 ") == (1, 3)
    for bad in ("2by2", "0x2", "", "2x2x2", "99x1"):
        with pytest.raises(ComicgenError, match="--grid"):
            parse_grid(bad)


def test_trim_border_of_a_transparent_cell():
    cell = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(cell).rectangle((40, 40, 59, 59), fill=(0, 0, 0, 255))
    trimmed = trim_border(cell)
    assert trimmed is not None and trimmed.size[0] < 40
    assert trim_border(Image.new("RGBA", (10, 10), (0, 0, 0, 0))) is None


def test_load_keeps_full_size_for_sheets(tmp_path):
    path = tmp_path / "sheet.png"
    Image.new("RGB", (MAX_SIDE + 100, 50), "white").save(path)
    assert load_image(path, max_side=None).image.size == (MAX_SIDE + 100, 50)


def test_unreadable_file_never_raises_anything_but_comicgen_error(tmp_path):
    good = io.BytesIO()
    disc().save(good, "PNG")
    data = bytearray(good.getvalue())
    rng = random.Random(3)
    for i in range(30):
        broken = bytearray(data)
        for _ in range(8):
            broken[rng.randrange(16, len(broken))] = rng.randrange(256)
        path = tmp_path / f"broken{i}.png"
        path.write_bytes(bytes(broken))
        try:
            load_image(path)
        except ComicgenError as exc:
            assert str(path) in exc.line()


def test_paths_as_strings_work(tmp_path):
    disc().save(tmp_path / "a.png")
    assert load_image(str(tmp_path / "a.png")).image.size == (80, 80)
