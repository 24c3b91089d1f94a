"""The model families, one table: family name -> the ``EmbeddingModel`` subclass that owns the family.

Each module of this package defines a family (or a few) and registers it with :func:`register_family`; every
module here is imported with the package, so a new family is one new file. The backbone catalogue
(``finetuner_protocol.backbones``) says which family builds a name; what a family does is its class's.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TypeVar

from finetuner_core.models.base import EmbeddingModel

FAMILIES: dict[str, type[EmbeddingModel]] = {}
Family = TypeVar("Family", bound=type[EmbeddingModel])


def register_family(cls: Family) -> Family:
    """Class decorator: add a family to :data:`FAMILIES` under its ``family`` name."""
    if cls.family in FAMILIES:
        raise ValueError(f"model family {cls.family!r} is registered twice ({FAMILIES[cls.family].__name__})")
    FAMILIES[cls.family] = cls
    return cls


def get_family(name: str) -> type[EmbeddingModel]:
    """The class of the family ``name``; ``ValueError`` naming the known families otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; the families are {', '.join(list_families())}") from None


def list_families() -> list[str]:
    """Every registered family name, sorted."""
    return sorted(FAMILIES)


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
