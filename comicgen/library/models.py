"""The library's tables, as SQLModel classes.

The schema itself is created and changed only by the numbered migrations in
:mod:`comicgen.library.migrations`; these classes map onto it. A test checks that
both agree, column for column.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Column, ForeignKey, Integer, LargeBinary
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class CharacterBase(SQLModel):
    name: str = Field(max_length=64, description="As the person wrote it (trimmed, NFC).")
    description: str = Field(default="", description="Expanded for {name} in prompts.")


class Character(CharacterBase, table=True):
    __tablename__ = "character"

    id: int | None = Field(default=None, primary_key=True)
    name_key: str = Field(unique=True, description="casefold(name): names are unique ignoring case")
    created: datetime = Field(default_factory=utcnow)


class ReferenceImageBase(SQLModel):
    position: int = Field(description="Order of the image within its character, from 0.")
    sha256: str = Field(description="sha256 of the normalised pixels (mode, size, bytes).")
    width: int
    height: int
    mode: str = Field(default="RGB", description="RGB, or RGBA when the alpha is a mask.")
    source: str = Field(default="", description="Where the image came from, for people.")


class ReferenceImage(ReferenceImageBase, table=True):
    __tablename__ = "reference_image"

    id: int | None = Field(default=None, primary_key=True)
    character_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("character.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    png: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class PanelCache(SQLModel, table=True):
    __tablename__ = "panel_cache"

    key: str = Field(primary_key=True, description="Hash of everything that affects a panel.")
    path: str = Field(description="The PNG file, relative to the cache folder.")
    model: str = ""
    size: int = Field(description="File size in bytes.")
    created: datetime = Field(default_factory=utcnow)
    meta: str | None = Field(default=None, description="JSON, free-form.")
