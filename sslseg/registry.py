"""One registry type for datasets, models and methods."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from sslseg import SslsegError

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """A name -> object mapping filled by a decorator: ``@METHODS.register("bcp")``."""

    def __init__(self, kind: str, modules: tuple[str, ...] = ()) -> None:
        """``modules``: the modules whose import registers the entries, imported on the first lookup (so that
        importing the registry costs nothing a stage does not use)."""
        self.kind = kind
        self._items: dict[str, T] = {}
        self._modules = modules

    def _load(self) -> dict[str, T]:
        if self._modules:
            import importlib

            modules, self._modules = self._modules, ()
            for m in modules:
                importlib.import_module(m)
        return self._items

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def __getitem__(self, name: str) -> T:
        try:
            return self._load()[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise SslsegError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def __contains__(self, name: str) -> bool:
        return name in self._load()

    def names(self) -> list[str]:
        return sorted(self._load())
