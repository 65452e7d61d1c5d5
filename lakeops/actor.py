"""Who is acting: the authenticated user of the request being served, else the process's own actor.

Services keep a default actor (the OS user, or what they were built with) and write it into every
change row they make. With authentication on, the API sets the request's user here for the time
of the request (a ``ContextVar``, so each request and each of its worker threads sees its own), and
``ActorField`` makes ``service.actor`` answer that user instead.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_current: ContextVar[str | None] = ContextVar("lakeops_actor", default=None)


def default_actor() -> str:
    """Who changes are recorded as when nobody is named: the OS user, as MLflow's ``user_id``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def current_user() -> str | None:
    """The authenticated user acting now, or None (authentication off, or outside a request)."""
    return _current.get()


@contextmanager
def acting_as(username: str | None) -> Iterator[None]:
    """Make ``username`` the actor of everything done inside the block (None: nobody in particular)."""
    token = _current.set(username)
    try:
        yield
    finally:
        _current.reset(token)


class ActorField:
    """A service attribute ``actor``: the acting user if there is one, else the value assigned."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}_default"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return _current.get() or getattr(obj, self._slot)

    def __set__(self, obj: Any, value: str | None) -> None:
        setattr(obj, self._slot, value)
