"""Named component registries: the only lists of modalities, encoders, fusions and heads.

A component is one module that decorates its class with `@REGISTRY.register("name")`.
Registries discover their package's modules lazily on first lookup, so adding a component is
adding one file: nothing else lists it. The registries live here, at the bottom of the import
graph, so that the manifest can validate names without importing the components' packages.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from mmauto.errors import did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> class map filled by the modules of one package."""

    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._items: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            obj.name = name
            return obj

        return deco

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_") and info.name != "base":
                importlib.import_module(f"{self.package}.{info.name}")

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._items)

    def get(self, name: str) -> T:
        self._discover()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._items)} "
                f"({', '.join(self.names())})"
            ) from None

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._items

    def items(self) -> Iterator[tuple[str, T]]:
        self._discover()
        return iter(sorted(self._items.items()))


MODALITIES: Registry = Registry("modality", "mmauto.modalities")
ENCODERS: Registry = Registry("encoder", "mmauto.encoders")
FUSIONS: Registry = Registry("fusion", "mmauto.fusion")
HEADS: Registry = Registry("head", "mmauto.heads")
