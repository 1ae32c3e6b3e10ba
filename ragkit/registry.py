"""A named registry: a dict and a decorator, so a config name resolves without an if-chain.

Every pluggable part (encoder providers, dense index backends, sparse channels, fusion methods)
has one :class:`Registry`. An entry is either the object itself, registered by the decorator
when the module that defines it is imported, or a ``"module:attr"`` string, imported on first
use: that keeps heavy dependencies (faiss, qdrant, torch) out of the import path of the
registry's own module while still listing the name. An unknown name raises a
:class:`~ragkit.errors.ConfigError` that lists the known ones, so a typo in ragkit.toml says
what would have worked.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from ragkit.errors import ConfigError

__all__ = ["Registry", "import_target"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names to implementations of one kind; ``setting`` names the config key in errors."""

    def __init__(self, kind: str, setting: str) -> None:
        self.kind = kind
        self.setting = setting
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator: ``@registry.register("name")`` over a class or function."""

        def decorate(target: T) -> T:
            self.add(name, target, replace=replace)
            return target

        return decorate

    def add(self, name: str, target: T | str, *, replace: bool = False) -> None:
        """Register ``target`` (or a lazy ``"module:attr"`` path) under ``name``.

        A second registration of a name is refused unless ``replace``: two plugins claiming
        one name would otherwise win by import order. The same target again (its module
        imported after its path was listed, or reloaded) is not a conflict.
        """
        key = name.lower()
        current = self._entries.get(key)
        if current is not None and not replace and _path_of(current) != _path_of(target):
            raise ValueError(f"{self.kind} {name!r} is registered already")
        self._entries[key] = target

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests registering a throwaway backend clean up with this)."""
        self._entries.pop(name.lower(), None)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> T:
        """The implementation registered under ``name``, importing a lazy one on first use."""
        key = name.lower()
        if key not in self._entries:
            raise ConfigError(
                f"{self.setting}={name!r} is unknown; use one of {', '.join(self.names())}"
            )
        entry = self._entries[key]
        if isinstance(entry, str):
            entry = import_target(entry)
            self._entries[key] = entry
        return entry


def import_target(path: str) -> Any:
    """Import ``"package.module:attr.attr"`` and return the attribute."""
    module_name, _, attr = path.partition(":")
    target: object = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def _path_of(target: object) -> str:
    if isinstance(target, str):
        return target
    qualname = getattr(target, "__qualname__", None)
    if qualname is None:  # an instance (a backend descriptor): equal when its fields are
        return repr(target)
    return f"{getattr(target, '__module__', '')}:{qualname}"
