"""The character library: characters, sheets, folders, the panel cache and migrations."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw
from sqlmodel import SQLModel

from comicgen.errors import ComicgenError, LocatedError
from comicgen.library import CharacterInfo, Library, RefImage, clean_name
from comicgen.library import models as _models  # noqa: F401 - registers the tables
from comicgen.library.migrations import (
    MIGRATIONS,
    SCHEMA_VERSION,
    backup_path,
    m001_initial,
)


def figure(path: Path, colour=(200, 30, 30), size=(64, 64), alpha=False) -> Path:
    background = (0, 0, 0, 0) if alpha else (255, 255, 255)
    img = Image.new("RGBA" if alpha else "RGB", size, background)
    w, h = size
    fill = (*colour, 255) if alpha else colour
    ImageDraw.Draw(img).ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=fill)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture
def lib(tmp_path):
    with Library.open(tmp_path / "comicgen.db", tmp_path / ".cache") as library:
        yield library


# -- characters ---------------------------------------------------------------------------


def test_add_list_get_remove(lib, tmp_path):
    a = figure(tmp_path / "a.png")
    b = figure(tmp_path / "b.png", colour=(0, 0, 200), alpha=True)
    info = lib.add_character("Pip", "a small red creature", images=[a, b])
    assert isinstance(info, CharacterInfo)
    assert info.name == "Pip" and info.description == "a small red creature"
    assert [(i.width, i.height) for i in info.images] == [(64, 64), (64, 64)]
    assert all(isinstance(i, RefImage) and len(i.sha256) == 64 for i in info.images)
    assert info.images[0].source == str(a.resolve())

    lib.add_character("alice", "", images=[a])
    assert lib.character_names() == ["alice", "Pip"]
    listed = lib.list_characters()
    assert [c.name for c in listed] == ["alice", "Pip"]
    assert listed[1].images[1].png.startswith(b"\x89PNG")  # read on first use

    pip = lib.get_character("pIP")
    assert pip.image_shas == info.image_shas
    assert pip.images[0].image().mode == "RGB"
    assert not pip.images[0].has_alpha and pip.images[1].has_alpha
    mask = pip.images[1].mask()
    assert mask.mode == "L" and mask.getpixel((0, 0)) == 0 and mask.getpixel((32, 32)) == 255
    assert pip.images[0].mask().getpixel((32, 32)) == 255  # from the border colour

    lib.remove_character("PIP")
    assert lib.find_character("pip") is None
    assert lib.character_names() == ["alice"]
    with pytest.raises(ComicgenError, match="unknown character 'pip'"):
        lib.remove_character("pip")


def test_names_are_unique_ignoring_case(lib, tmp_path):
    a = figure(tmp_path / "a.png")
    lib.add_character("Zoë", images=[a])
    with pytest.raises(ComicgenError) as info:
        lib.add_character("ZOË", images=[a])
    assert "already exists" in info.value.line() and "--replace" in info.value.line()
    replaced = lib.add_character("zoë ", "new", images=[a, a], replace=True)
    assert replaced.name == "zoë" and len(replaced.images) == 2
    assert lib.character_names() == ["zoë"]


def test_unknown_character_suggests_the_closest(lib, tmp_path):
    lib.add_character("alice", images=[figure(tmp_path / "a.png")])
    with pytest.raises(ComicgenError, match="did you mean 'alice'"):
        lib.get_character("alise")
    assert lib.find_character("alise") is None
    assert lib.find_character("") is None


def test_names_any_unicode_but_no_control_characters(lib, tmp_path):
    a = figure(tmp_path / "a.png")
    for name in ("Zoë 🐱", "<script>alert(1)</script>", "{{ x }}", "../../etc", "مرحبا"):
        assert lib.add_character(name, images=[a]).name == name
        assert lib.get_character(name).name == name
    assert clean_name("  Pip ") == "Pip"
    assert clean_name("Zoe\u0308") == "Zo\u00eb"  # NFC: one way to spell a name
    for bad in ("", "   ", "a\nb", "tab\there", "x" * 65, "nul\x00"):
        with pytest.raises(ComicgenError, match="character name"):
            lib.add_character(bad, images=[a])


def test_add_needs_images(lib):
    with pytest.raises(ComicgenError, match="has no images"):
        lib.add_character("Pip")
    with pytest.raises(ComicgenError, match="--grid needs --sheet"):
        lib.add_character("Pip", images=[], grid="2x2")


def test_add_is_one_transaction(lib, tmp_path):
    good = [figure(tmp_path / f"g{i}.png") for i in range(3)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ComicgenError, match="bad.png"):
        lib.add_character("Pip", images=[good[0], good[1], bad, good[2]])
    assert lib.find_character("Pip") is None
    assert lib.character_names() == []

    lib.add_character("Pip", "first", images=[good[0]])
    with pytest.raises(ComicgenError):
        lib.add_character("Pip", "second", images=[good[1], bad], replace=True)
    kept = lib.get_character("pip")
    assert kept.description == "first" and len(kept.images) == 1


def test_add_from_a_sheet(lib, tmp_path):
    sheet = Image.new("RGB", (200, 200), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (x, y) in enumerate([(50, 50), (150, 50), (50, 150), (150, 150)]):
        draw.ellipse((x - 25, y - 30, x + 25, y + 30), fill=(60 * i, 0, 200))
    path = tmp_path / "sheet.png"
    sheet.save(path)
    info = lib.add_character("Pip", sheet=path, grid="2x2", images=[figure(tmp_path / "x.png")])
    assert len(info.images) == 5
    assert all(i.width < 100 and i.height < 100 for i in info.images[1:])  # trimmed cells
    assert "view 4" in info.images[4].source
    default_grid = lib.add_character("Bo", sheet=path)
    assert len(default_grid.images) == 4
    with pytest.raises(ComicgenError, match="--grid"):
        lib.add_character("Cy", sheet=path, grid="two")


def test_add_reports_notes(lib, tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    info = lib.add_character("Pip", images=[gif])
    assert any("first frame" in n for n in info.notes)


# -- folders: export and import -----------------------------------------------------------


def test_export_import_round_trip(tmp_path):
    a = figure(tmp_path / "a.png")
    b = figure(tmp_path / "b.png", alpha=True, colour=(10, 200, 10))
    with Library.open(tmp_path / "one.db", tmp_path / "c1") as one:
        original = one.add_character("Zoë 🐱", "a <b>cat</b>", images=[a, b])
        one.add_character("Pip", "", images=[a])
        out = tmp_path / "exported"
        first = one.export_character("zoë 🐱", out)
        one.export_character("pip", out)
    assert first == out / "Zo.yaml"
    data = yaml.safe_load(first.read_text(encoding="utf-8"))
    assert data == {
        "name": "Zoë 🐱",
        "description": "a <b>cat</b>",
        "images": ["Zo/01.png", "Zo/02.png"],
    }
    with Library.open(tmp_path / "two.db", tmp_path / "c2") as two:
        assert sorted(two.import_folder(out)) == ["Pip", "Zoë 🐱"]
        back = two.get_character("ZOË 🐱")
        assert back.description == original.description
        assert back.image_shas == original.image_shas
        assert back.images[1].has_alpha
        assert back.images[0].source == "exported/Zo/01.png"
        assert two.import_folder(out) == []  # already there: skipped


def test_export_refuses_to_overwrite_and_avoids_name_clashes(lib, tmp_path):
    a = figure(tmp_path / "a.png")
    lib.add_character("Pip!", images=[a, a])
    lib.add_character("Pip?", images=[a])
    out = tmp_path / "out"
    assert lib.export_character("pip!", out).name == "Pip.yaml"
    assert lib.export_character("pip?", out).name == "Pip-2.yaml"
    with pytest.raises(ComicgenError, match="already exists.*--force"):
        lib.export_character("Pip!", out)
    lib.add_character("Pip!", images=[a], replace=True)
    lib.export_character("Pip!", out, overwrite=True)
    assert sorted(p.name for p in (out / "Pip").iterdir()) == ["01.png"]  # stale 02 removed
    assert yaml.safe_load((out / "Pip.yaml").read_text())["name"] == "Pip!"


def test_import_default_images_folder_and_update(lib, tmp_path):
    chars = tmp_path / "characters"
    figure(chars / "pip" / "b-side.png")
    figure(chars / "pip" / "a-front.png", colour=(0, 0, 255))
    (chars / "pip" / "notes.txt").write_text("ignored")
    (chars / "pip.yaml").write_text("name: Pip\ndescription: a red ball\n", encoding="utf-8")
    assert lib.import_folder(chars) == ["Pip"]
    pip = lib.get_character("Pip")
    assert [Path(i.source).name for i in pip.images] == ["a-front.png", "b-side.png"]

    (chars / "pip.yaml").write_text("name: Pip\ndescription: a BLUE ball\n", encoding="utf-8")
    assert lib.import_folder(chars) == []  # present: skipped, images not read
    assert lib.get_character("Pip").description == "a red ball"
    assert lib.import_folder(chars, update=True) == ["Pip"]
    assert lib.get_character("Pip").description == "a BLUE ball"
    assert lib.import_folder(chars, update=True) == []  # unchanged


def test_import_sheet_entry(lib, tmp_path):
    chars = tmp_path / "characters"
    sheet = Image.new("RGB", (120, 60), "white")
    ImageDraw.Draw(sheet).rectangle((20, 20, 40, 40), fill="red")
    ImageDraw.Draw(sheet).rectangle((80, 10, 100, 50), fill="blue")
    chars.mkdir()
    sheet.save(chars / "bo-sheet.png")
    (chars / "bo.yaml").write_text("name: Bo\nsheet: bo-sheet.png\ngrid: 2x1\n")
    assert lib.import_folder(chars) == ["Bo"]
    assert len(lib.get_character("bo").images) == 2


@pytest.mark.parametrize(
    "images",
    ["[../secret.png]", "['{secret}']", "[link/secret.png]"],
    ids=["dotdot", "absolute", "symlink"],
)
def test_import_refuses_paths_outside_the_folder(lib, tmp_path, images):
    chars = tmp_path / "characters"
    chars.mkdir()
    secret = figure(tmp_path / "secret.png")
    os.symlink(tmp_path, chars / "link")
    (chars / "pip.yaml").write_text(
        "name: Pip\nimages: " + images.replace("{secret}", str(secret)) + "\n"
    )
    with pytest.raises(LocatedError) as info:
        lib.import_folder(chars)
    line = info.value.line()
    assert line.startswith("characters/pip.yaml:2:")
    assert "outside" in line and "--allow-outside" in line
    assert lib.character_names() == []
    assert lib.import_folder(chars, allow_outside=True) == ["Pip"]


def test_import_refuses_a_character_file_linked_from_outside(lib, tmp_path):
    chars = tmp_path / "characters"
    chars.mkdir()
    figure(tmp_path / "pip" / "a.png")
    (tmp_path / "pip.yaml").write_text("name: Pip\n")
    os.symlink(tmp_path / "pip.yaml", chars / "pip.yaml")
    with pytest.raises(ComicgenError, match="outside"):
        lib.import_folder(chars)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [unclosed\n", "characters/pip.yaml:2:1: YAML syntax error"),
        (
            "name: Pip\nimage: [a.png]\n",
            "pip.yaml:2:1: unknown field 'image' — did you mean 'images'?",
        ),
        ("- just\n- a list\n", "characters/pip.yaml:1: a character file must be a mapping"),
        ("name: 12\nimages: [a.png]\n", "characters/pip.yaml:1:1: name: must be text"),
        ("name: Pip\nimages: [a.png, nope.png]\n", "pip.yaml:2:17: images[1]: no such image"),
        ("name: Pip\nimages: [a.png, 3]\n", "pip.yaml:2:17: images[1]: must be an image path"),
        ("name: Pip\ngrid: 2x2\n", "characters/pip.yaml:2:1: grid: needs a sheet: entry"),
        ('name: "a\\nb"\nimages: [a.png]\n', "characters/pip.yaml:1: character name"),
    ],
)
def test_bad_character_file_gives_file_and_line(lib, tmp_path, text, expected):
    chars = tmp_path / "characters"
    figure(chars / "a.png")
    (chars / "pip.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ComicgenError) as info:
        lib.import_folder(chars)
    assert expected in info.value.line()
    assert "\n" not in info.value.line()


def test_import_unknown_field_suggests(lib, tmp_path):
    chars = tmp_path / "characters"
    chars.mkdir()
    (chars / "pip.yaml").write_text("name: Pip\ndescripton: x\n")
    with pytest.raises(ComicgenError, match="did you mean 'description'"):
        lib.import_folder(chars)


def test_import_is_all_or_nothing(lib, tmp_path):
    chars = tmp_path / "characters"
    figure(chars / "a" / "1.png")
    (chars / "b").mkdir()
    (chars / "b" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (chars / "a.yaml").write_text("name: Alpha\n")
    (chars / "b.yaml").write_text("name: Beta\n")
    with pytest.raises(ComicgenError, match=r"characters/b/1\.png"):
        lib.import_folder(chars)
    assert lib.character_names() == []


def test_import_duplicate_names_and_missing_images(lib, tmp_path):
    chars = tmp_path / "characters"
    figure(chars / "x.png")
    (chars / "one.yaml").write_text("name: Pip\nimages: [x.png]\n")
    (chars / "two.yaml").write_text("name: PIP\nimages: [x.png]\n")
    with pytest.raises(ComicgenError, match="also defined in characters/one.yaml"):
        lib.import_folder(chars)
    (chars / "two.yaml").write_text("name: Other\n")
    with pytest.raises(LocatedError, match="two.yaml:1: no images"):
        lib.import_folder(chars)
    with pytest.raises(ComicgenError, match="no such characters folder"):
        lib.import_folder(tmp_path / "nowhere")


# -- the panel cache ----------------------------------------------------------------------


def test_cache_put_get_keys_and_orphans(lib, tmp_path):
    key = "ab" * 32
    assert lib.cache_get(key) is None
    path = lib.cache_put(key, b"\x89PNG fake", model="tiny:tiny", meta={"steps": 2})
    assert path.is_file() and path.read_bytes() == b"\x89PNG fake"
    assert path.is_relative_to(tmp_path / ".cache" / "panels")
    assert lib.cache_get(key) == path
    odd = lib.cache_put("weird key / with slashes", b"x")
    assert odd.parent.parent == tmp_path / ".cache" / "panels"
    assert lib.cache_keys() == {key, "weird key / with slashes"}
    lib.cache_put(key, b"again")  # replaces
    assert lib.cache_get(key).read_bytes() == b"again"

    odd.unlink()
    assert lib.cache_get("weird key / with slashes") is None
    assert lib.cache_keys() == {key}
    assert lib.cache_missing() == ["weird key / with slashes"]
    stray = tmp_path / ".cache" / "panels" / "zz" / "left-over.png"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"?")
    assert lib.cache_orphans() == [stray]
    with pytest.raises(ValueError):
        lib.cache_put("", b"x")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cache_put_keeps_file_and_row_together_through_an_interrupt(lib, monkeypatch, sig):
    """A signal that comes between the panel's file and its row is held back until the
    row is written too, then delivered (a stopped render then counts the panel as kept)."""
    import comicgen.library.cache as library_module

    write = library_module.atomic_write_bytes

    def write_then_signal(path, data):
        write(path, data)
        os.kill(os.getpid(), sig)

    monkeypatch.setattr(library_module, "atomic_write_bytes", write_then_signal)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            lib.cache_put("cd" * 32, b"\x89PNG fake")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert lib.cache_get("cd" * 32) is not None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_image_problems_finds_damaged_images(lib, tmp_path):
    lib.add_character("Pip", images=[figure(tmp_path / "a.png")])
    assert lib.image_problems() == []
    assert lib.integrity_check() == ["ok"]
    conn = sqlite3.connect(tmp_path / "comicgen.db")
    conn.execute("UPDATE reference_image SET png = X'0001'")
    conn.execute(
        "INSERT INTO character (name, name_key, description, created) "
        "VALUES ('Bo', 'bo', '', '2024-01-01 00:00:00')"
    )
    conn.commit()
    conn.close()
    problems = lib.image_problems()
    assert any("'Bo' has no images" in p for p in problems)
    assert any("'Pip' image 1 does not decode" in p for p in problems)


# -- schema and migrations ----------------------------------------------------------------


def _version(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def test_migration_registry_is_numbered_from_one():
    assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
    assert MIGRATIONS[0].name == "m001_initial"
    assert all(m.name.startswith(f"m{m.version:03d}_") for m in MIGRATIONS)


def test_new_database_has_the_schema_version_and_wal(tmp_path):
    db = tmp_path / "comicgen.db"
    with Library.open(db, tmp_path / ".cache") as library:
        assert library.db.migration.from_version == 0
        assert library.db.migration.backup is None
    assert _version(db) == SCHEMA_VERSION
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert not list(tmp_path.glob("comicgen.db.bak-*"))


def test_models_match_the_migrated_schema(tmp_path):
    db = tmp_path / "comicgen.db"
    Library.open(db, tmp_path / ".cache").close()
    conn = sqlite3.connect(db)
    for table in SQLModel.metadata.sorted_tables:
        if table.name not in ("character", "reference_image", "panel_cache"):
            continue
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table.name})")}
        assert columns == {c.name for c in table.columns}, table.name
    conn.close()


def test_newer_database_is_refused(tmp_path):
    db = tmp_path / "comicgen.db"
    Library.open(db, tmp_path / ".cache").close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(ComicgenError) as info:
        Library.open(db, tmp_path / ".cache")
    line = info.value.line()
    assert f"schema version {SCHEMA_VERSION + 5}, newer than this comicgen knows" in line
    assert "upgrade comicgen" in line
    assert _version(db) == SCHEMA_VERSION + 5  # untouched


def test_older_database_is_migrated_after_a_backup(tmp_path):
    db = tmp_path / "comicgen.db"
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((4, 4), (255, 0, 0, 255))
    import io

    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    from comicgen.images import pixel_sha256

    # a version-1 database, built by hand the way comicgen 1 left it
    conn = sqlite3.connect(db, isolation_level=None)
    m001_initial(conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO character (id, name, name_key, description, created) "
        "VALUES (1, 'Pip', 'pip', 'old one', '2024-05-01 10:00:00')"
    )
    conn.execute(
        "INSERT INTO reference_image (character_id, position, png, sha256, width, height, "
        "source) VALUES (1, 0, ?, ?, 8, 8, 'old.png')",
        (buffer.getvalue(), pixel_sha256(rgba)),
    )
    conn.execute(
        "INSERT INTO panel_cache (key, path, model, size, created) "
        "VALUES ('k1', 'panels/k1.png', 'm', 3, '2024-05-01 10:00:00')"
    )
    conn.close()

    with Library.open(db, tmp_path / ".cache") as library:
        report = library.db.migration
        assert (report.from_version, report.to_version) == (1, SCHEMA_VERSION)
        assert report.backup == backup_path(db, 1) == tmp_path / "comicgen.db.bak-v1"
        pip = library.get_character("pip")
        assert pip.description == "old one" and pip.images[0].has_alpha  # mode backfilled
        assert pip.images[0].mask().getpixel((4, 4)) == 255
        library.cache_put("k2", b"new", meta={"a": 1})
    assert _version(db) == SCHEMA_VERSION
    assert _version(report.backup) == 1
    old = sqlite3.connect(report.backup)
    assert old.execute("SELECT name FROM character").fetchall() == [("Pip",)]
    old.close()
    # opening again migrates nothing
    with Library.open(db, tmp_path / ".cache") as library:
        assert not library.db.migration.migrated


def test_failed_migration_leaves_the_old_schema(tmp_path, monkeypatch):
    from comicgen.library import migrations

    db = tmp_path / "comicgen.db"
    conn = sqlite3.connect(db, isolation_level=None)
    m001_initial(conn)
    conn.execute("PRAGMA user_version = 1")
    conn.close()

    def broken(conn):
        conn.execute("ALTER TABLE panel_cache ADD COLUMN meta VARCHAR")
        raise RuntimeError("boom")

    monkeypatch.setattr(
        migrations, "MIGRATIONS", [MIGRATIONS[0], migrations.Migration(2, "m002_x", broken)]
    )
    with pytest.raises(RuntimeError, match="boom"):
        migrations.migrate(db)
    assert _version(db) == 1
    conn = sqlite3.connect(db)
    assert "meta" not in {r[1] for r in conn.execute("PRAGMA table_info(panel_cache)")}
    conn.close()


def test_not_a_database_is_one_clear_line(tmp_path):
    db = tmp_path / "comicgen.db"
    db.write_bytes(b"this is a text file, not sqlite" * 100)
    with pytest.raises(ComicgenError, match="comicgen.db: not a comicgen database"):
        Library.open(db, tmp_path / ".cache")

    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(ComicgenError, match="holds tables such as 'invoices'"):
        Library.open(other, tmp_path / ".cache")


def test_first_opens_of_a_new_database_at_the_same_moment_all_succeed(tmp_path):
    """Three threads open one new database at once, a hundred times (a studio's builder and
    painter do on a fresh workspace): the switch to WAL, which SQLite refuses at once
    while another connection holds a lock, is retried (it failed about once in ten)."""
    import threading

    from comicgen.library.database import Database

    failures = []
    for trial in range(100):
        path = tmp_path / f"t{trial}" / "comicgen.db"
        start = threading.Barrier(3)

        def first_open(path=path, start=start):
            start.wait()
            try:
                db = Database(path)
                with db.write():
                    pass
                db.close()
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                failures.append(str(exc))

        threads = [threading.Thread(target=first_open) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
