"""Progress bars for long operations (bulk imports, large uploads, maintenance), with tqdm.

A bar shows in a terminal or notebook; ``enabled=None`` (the default everywhere) shows it only
when stderr is a terminal, so logs and CI output stay clean; ``True`` forces it on.
"""

from __future__ import annotations

import sys
from typing import IO, Any


def progress_bar(
    total: int | None, *, desc: str, unit: str = "it", enabled: bool | None = None, file: IO[str] | None = None
) -> Any:
    """A tqdm bar (call ``.update(n)``, use as a context manager); disabled off-terminal by default."""
    from tqdm.auto import tqdm

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
