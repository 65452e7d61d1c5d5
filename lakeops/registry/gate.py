"""The quality gate's port: what decides whether a version may get a protected alias."""

from __future__ import annotations

from typing import Protocol


class AliasGate(Protocol):
    """Decides whether a model version may get a protected alias (e.g. ``production``)."""

    def check_model_version(self, *, source_run_id: str | None, model_id: str | None) -> list[str]:
        """Reasons the version must not get a protected alias; empty when it may."""
