"""One registry type for datasets, models and methods."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from sslseg import SslsegError

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """A name -> object mapping filled by a decorator: ``@METHODS.register("bcp")``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise SslsegError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)
