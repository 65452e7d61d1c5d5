"""Progress bars for long operations (bulk imports, large uploads, maintenance), with tqdm.

A bar shows in a terminal or notebook; ``enabled=None`` (the default everywhere) shows it only
when stderr is a terminal, so logs and CI output stay clean; ``True`` forces it on.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import IO, Any


def _tqdm_class() -> Any:
    """tqdm's notebook widget where ipywidgets is installed, else its text bar.

    ``tqdm.auto`` picks the widget in any Jupyter kernel and, without ipywidgets, warns
    "IProgress not found" on every bar; the text bar works everywhere.
    """
    if importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm

        return tqdm
    from tqdm.auto import tqdm as auto

    return auto


def progress_bar(
    total: int | None, *, desc: str, unit: str = "it", enabled: bool | None = None, file: IO[str] | None = None
) -> Any:
    """A tqdm bar (call ``.update(n)``, use as a context manager); disabled off-terminal by default."""
    tqdm = _tqdm_class()
    stream = file or sys.stderr
    disable = not stream.isatty() if enabled is None else not enabled
    scale = unit == "B"
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=scale,
        unit_divisor=1024 if scale else 1000,
        disable=disable,
        file=stream,
        dynamic_ncols=True,
        mininterval=0.2,
    )
