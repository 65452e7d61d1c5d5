"""The lakeops exception tree: every error the domain raises, and nothing else.

LakeopsError
 ├── NotFoundError            an experiment, run or other entity does not exist
 ├── AlreadyExistsError       a create collides with an existing unique name or id
 ├── ConflictError            a commit or optimistic-concurrency failure that retrying did not cure
 ├── InvalidArgumentError     bad input: empty or over-long key, bad filter, wrong type, ...
 ├── DataQualityError         data failed an expectation suite
 ├── UnauthenticatedError     no valid credentials (authentication is on)
 ├── PermissionDeniedError    the user may not do this (or a path leaves its store's root)
 └── BackendUnavailableError  the configured catalog or object store cannot be reached or used
      ├── ServerUnreachableError  (client) nothing accepts connections at the server's address
      └── ServerTimeoutError      (client) the server took longer than the client's timeout to answer
"""

from __future__ import annotations

from typing import Any


class LakeopsError(Exception):
    """Base class of every lakeops error."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class NotFoundError(LakeopsError):
    """The entity asked for does not exist."""


class AlreadyExistsError(LakeopsError):
    """An entity with the same unique name or id already exists."""


class ConflictError(LakeopsError):
    """A concurrent change made the operation impossible, even after retrying."""


class InvalidArgumentError(LakeopsError):
    """The caller passed a value that can never be valid."""


class DataQualityError(LakeopsError):
    """Data failed validation against its expectation suite."""


class UnauthenticatedError(LakeopsError):
    """The request carries no valid credentials, and the service requires them."""


class PermissionDeniedError(LakeopsError):
    """The caller is known but may not do this."""


class BackendUnavailableError(LakeopsError):
    """The storage backend is missing, misconfigured or unreachable."""


class ServerUnreachableError(BackendUnavailableError):
    """The client could not connect to ``lakeops serve`` (connection refused, unknown host)."""


class ServerTimeoutError(BackendUnavailableError):
    """``lakeops serve`` accepted the request but did not answer within the client's timeout."""
