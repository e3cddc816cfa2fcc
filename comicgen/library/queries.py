"""Queries on the library tables. Each takes an open session; the caller owns the transaction."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from sqlalchemy import delete
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from comicgen.library.models import Character, PanelCache, ReferenceImage


def name_key(name: str) -> str:
    """The case-insensitive identity of a character name."""
    return unicodedata.normalize("NFC", name.strip()).casefold()


# -- characters -----------------------------------------------------------------------


def find_character(session: Session, name: str) -> Character | None:
    return session.exec(select(Character).where(Character.name_key == name_key(name))).first()


def list_characters(session: Session) -> list[Character]:
    return list(session.exec(select(Character).order_by(col(Character.name_key))).all())


def character_keys(session: Session) -> set[str]:
    return set(session.exec(select(Character.name_key)).all())


def character_names(session: Session) -> list[str]:
    return list(session.exec(select(Character.name).order_by(col(Character.name_key))).all())


def images_of(
    session: Session, character_ids: Iterable[int], *, with_png: bool = True
) -> dict[int, list[ReferenceImage]]:
    """Each character's reference images in order; ``with_png=False`` leaves the bytes out."""
    ids = list(character_ids)
    result: dict[int, list[ReferenceImage]] = {i: [] for i in ids}
    if not ids:
        return result
    query = (
        select(ReferenceImage)
        .where(col(ReferenceImage.character_id).in_(ids))
        .order_by(col(ReferenceImage.character_id), col(ReferenceImage.position))
    )
    if not with_png:
        query = query.options(defer(ReferenceImage.png))  # type: ignore[arg-type]
    for image in session.exec(query).all():
        result[image.character_id].append(image)
    return result


def image_png(session: Session, image_id: int) -> bytes | None:
    return session.exec(select(ReferenceImage.png).where(ReferenceImage.id == image_id)).first()


def insert_character(
    session: Session, name: str, description: str, images: Sequence[ReferenceImage]
) -> Character:
    """A new character with ``images`` (their ``character_id`` and ``position`` are set here)."""
    character = Character(name=name, name_key=name_key(name), description=description)
    session.add(character)
    session.flush()
    assert character.id is not None
    for position, image in enumerate(images):
        image.character_id = character.id
        image.position = position
        session.add(image)
    session.flush()
    return character


def delete_character(session: Session, character: Character) -> None:
    session.exec(delete(ReferenceImage).where(col(ReferenceImage.character_id) == character.id))
    session.exec(delete(Character).where(col(Character.id) == character.id))


# -- the panel cache --------------------------------------------------------------------


def put_cache_row(session: Session, row: PanelCache) -> None:
    session.merge(row)


def cache_paths(session: Session) -> list[tuple[str, str]]:
    """(key, path) of every cache row."""
    return [(k, p) for k, p in session.exec(select(PanelCache.key, PanelCache.path)).all()]
