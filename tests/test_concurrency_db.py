"""Two real processes writing the same library at once: no error, nothing lost.

Each process adds its own characters, writes panel-cache rows and imports the same
character folder as the other (both race to insert the same names), all at the same
time. Afterwards every write is there and ``PRAGMA integrity_check`` is ok.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw

from comicgen.library import Library

ROUNDS = 12

WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from comicgen.library import Library

    tag, root = sys.argv[1], Path(sys.argv[2])
    image = root / "figure.png"
    (root / f"ready-{tag}").touch()
    while not (root / "go").exists():  # start both at the same moment
        time.sleep(0.005)
    with Library.open(root / "comicgen.db", root / ".cache") as lib:
        lib.import_folder(root / "characters")
        for i in range(ROUNDS):
            lib.add_character(f"{tag}-{i}", f"made by {tag}", images=[image])
            lib.cache_put(f"{tag}-panel-{i}", f"{tag}{i}".encode() * 50, model="m")
            lib.cache_put("shared-panel", b"same bytes from both", model="m")
            if i % 4 == 0:
                lib.import_folder(root / "characters")
                lib.remove_character(f"{tag}-{i}")
            lib.cache_get(f"{tag}-panel-{i}")
            lib.list_characters()
    print("done", tag)
    """
).replace("ROUNDS", str(ROUNDS))


def test_two_processes_write_at_once(tmp_path: Path):
    img = Image.new("RGB", (40, 40), "white")
    ImageDraw.Draw(img).ellipse((10, 10, 30, 30), fill="red")
    img.save(tmp_path / "figure.png")
    chars = tmp_path / "characters"
    for n in range(3):
        (chars / f"shared{n}").mkdir(parents=True)
        img.save(chars / f"shared{n}" / "a.png")
        (chars / f"shared{n}.yaml").write_text(f"name: Shared {n}\n")
    # no database yet: both processes race to create and migrate it as well

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), tag, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for tag in ("a", "b")
    ]
    try:
        for tag in ("a", "b"):
            _wait_for(tmp_path / f"ready-{tag}", procs)
        (tmp_path / "go").touch()
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "database is locked" not in err
        assert out.startswith("done")

    with Library.open(tmp_path / "comicgen.db", tmp_path / ".cache") as lib:
        names = set(lib.character_names())
        expected = {f"{t}-{i}" for t in "ab" for i in range(ROUNDS) if i % 4}
        expected |= {f"Shared {n}" for n in range(3)}
        assert names == expected
        assert all(len(lib.get_character(n).images) == 1 for n in names)
        keys = lib.cache_keys()
        assert keys == {f"{t}-panel-{i}" for t in "ab" for i in range(ROUNDS)} | {"shared-panel"}
        assert lib.cache_get("a-panel-3").read_bytes() == b"a3" * 50
        assert lib.cache_orphans() == []
        assert lib.integrity_check() == ["ok"]
    conn = sqlite3.connect(tmp_path / "comicgen.db")
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


def _wait_for(path: Path, procs) -> None:
    import time

    for _ in range(6000):
        if path.exists():
            return
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(p.stderr.read())
        time.sleep(0.01)
    raise AssertionError(f"{path.name} never appeared")


HOLDER = """
import sys
from pathlib import Path
from comicgen.library import Library

root = Path(sys.argv[1])
with Library.open(root / "comicgen.db", root / ".cache") as lib:
    (root / "writing").touch()
    lib.cache_put("late", b"written after the lock was released")
    lib.add_character("Late", images=[root / "figure.png"])
print("done")
"""


def test_a_writer_waits_for_a_held_lock_instead_of_failing(tmp_path: Path):
    import time

    Image.new("RGB", (16, 16), "red").save(tmp_path / "figure.png")
    Library.open(tmp_path / "comicgen.db", tmp_path / ".cache").close()
    holder = sqlite3.connect(tmp_path / "comicgen.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction
    script = tmp_path / "writer.py"
    script.write_text(HOLDER)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _wait_for(tmp_path / "writing", [proc])
        time.sleep(0.5)  # the writer is now waiting on the lock
        assert proc.poll() is None
        holder.execute("COMMIT")
        out, err = proc.communicate(timeout=120)
    finally:
        holder.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.strip() == "done"
    with Library.open(tmp_path / "comicgen.db", tmp_path / ".cache") as lib:
        assert lib.cache_get("late") is not None
        assert lib.character_names() == ["Late"]


def test_every_write_transaction_takes_the_write_lock_first(tmp_path: Path):
    """A transaction that reads, then writes, must start with BEGIN IMMEDIATE: in WAL
    mode a deferred one that another process wrote behind cannot take the write lock
    and fails at once with "database is locked", without waiting the busy timeout.
    Every statement of the library's operations is traced here: each transaction that
    changes something began IMMEDIATE, and no writing statement runs outside one."""
    from sqlalchemy import event

    Image.new("RGB", (32, 32), "white").save(tmp_path / "figure.png")
    chars = tmp_path / "characters"
    (chars / "bo").mkdir(parents=True)
    Image.new("RGB", (32, 32), "blue").save(chars / "bo" / "a.png")
    (chars / "bo.yaml").write_text("name: Bo\n")
    statements: list[str] = []
    with Library.open(tmp_path / "comicgen.db", tmp_path / ".cache") as lib:
        event.listen(
            lib.db.engine,
            "connect",
            lambda conn, _rec: conn.set_trace_callback(statements.append),
        )
        lib.db.engine.dispose()  # new connections, traced
        lib.add_character("Pip", "a red circle", images=[tmp_path / "figure.png"])
        lib.add_character("Pip", "a red square", images=[tmp_path / "figure.png"], replace=True)
        lib.import_folder(chars)
        lib.import_folder(chars, update=True)
        lib.cache_put("ab" * 16, b"png bytes", model="m")
        lib.cache_put("ab" * 16, b"png bytes again", model="m")
        lib.export_character("Bo", tmp_path / "out")
        lib.remove_character("bo")
        lib.cache_get("ab" * 16)
        assert lib.list_characters()[0].images[0].png  # a deferred load
    assert any(s.startswith("INSERT") for s in statements)
    begun = None  # how the open transaction began
    for statement in statements:
        word = statement.split()[0].upper()
        if word == "BEGIN":
            begun = statement.upper()
        elif word in ("COMMIT", "ROLLBACK"):
            begun = None
        elif word in WRITES:
            assert begun == "BEGIN IMMEDIATE", (begun, statement)


WRITES = {"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER"}
