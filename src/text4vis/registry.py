"""Registries of named choices: one style for every family (timm's ``@register_model``).

A family of named choices (temporal heads, classifiers, training objectives, search backends)
is a :class:`Registry`. Each member registers itself where it is defined::

    TEMPORAL_HEADS = Registry("temporal head", key="model.temporal", error=TemporalHeadError)

    @TEMPORAL_HEADS.register("mean")
    def _mean(...): ...

    TEMPORAL_HEADS.get("mean")    # the registered object
    TEMPORAL_HEADS.names()        # ("mean", ...) in registration order

An unknown name raises the family's error (a :class:`~text4vis.errors.Text4VisError`) naming the
config key and listing the valid names. Where a config field selects a member, its ``Literal``
type in :mod:`text4vis.config` lists the same names (a test checks that they agree).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from text4vis.errors import Text4VisError

__all__ = ["Registry", "RegistryError"]

T = TypeVar("T")


class RegistryError(Text4VisError, ValueError):
    """An unknown name, or a name registered twice; the message lists the valid names."""


class Registry(Generic[T]):
    """Name -> object (a builder, a class or a spec) of one family of named choices.

    Args:
        family: what a member is, for messages (``"temporal head"``).
        key: the config key or option that names a member (``"model.temporal"``), for messages.
        error: the exception raised for an unknown name (a subclass of
            :class:`~text4vis.errors.Text4VisError`; :class:`RegistryError` by default).
    """

    def __init__(
        self,
        family: str,
        *,
        key: str | None = None,
        error: type[Exception] = RegistryError,
    ) -> None:
        self.family = family
        self.key = key
        self.error = error
        self._members: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering its target under ``name`` (and returning it unchanged).

        Raises:
            RegistryError: ``name`` is already registered to another object.
        """

        def decorator(member: T) -> T:
            if name in self._members and self._members[name] is not member:
                raise RegistryError(f"{self.family} {name!r} is already registered")
            self._members[name] = member
            return member

        return decorator

    def get(self, name: str) -> T:
        """The member registered under ``name``.

        Raises:
            Exception: of the family's error type, naming the key and the valid names.
        """
        if name not in self._members:
            where = f" ({self.key})" if self.key else ""
            raise self.error(
                f"unknown {self.family} {name!r}{where}; choose one of {list(self._members)}"
            )
        return self._members[name]

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._members)

    def items(self) -> list[tuple[str, T]]:
        """``(name, member)`` pairs, in registration order."""
        return list(self._members.items())

    def values(self) -> list[T]:
        """The members, in registration order."""
        return list(self._members.values())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __repr__(self) -> str:
        return f"Registry({self.family!r}, {list(self._members)})"
