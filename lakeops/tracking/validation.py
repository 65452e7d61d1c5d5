"""MLflow's tracking rules, checked before anything is written: names, value lengths, metric points,
timestamps and page sizes.
"""

from __future__ import annotations

import re

from lakeops.errors import InvalidArgumentError

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_RESULTS_LIMIT = 50_000
# Timestamps are stored as microseconds and read back as datetimes: years 1 to 9999.
MIN_TIMESTAMP_MS = -62_135_596_800_000
MAX_TIMESTAMP_MS = 253_402_300_799_999
_KEY = re.compile(r"^[/\w.\- :]+$")


def validate_key(kind: str, key: object) -> str:
    """MLflow's rules for metric, param and tag names."""
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"Invalid {kind} name: must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgumentError(f"Invalid {kind} name {key[:40]!r}...: longer than {MAX_KEY_LENGTH} characters")
    if not _KEY.match(key):
        raise InvalidArgumentError(
            f"Invalid {kind} name {key!r}: only alphanumerics, underscores, dashes, periods, spaces, colons "
            "and slashes are allowed"
        )
    if key.startswith("/") or ".." in key.split("/"):
        raise InvalidArgumentError(f"Invalid {kind} name {key!r}: must be a relative path without '..'")
    return key


def validate_text(kind: str, value: object, limit: int) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        value = str(value)
    if len(value) > limit:
        raise InvalidArgumentError(f"Invalid {kind} value: {len(value)} characters, at most {limit} allowed")
    return value


def validate_metric(
    key: object, value: object, timestamp: object, step: object, *, known_keys: set[str] | None = None
) -> tuple[str, float, int, int]:
    """A metric point, checked: a name, a real number (NaN and +-inf allowed), integer time and step.

    ``known_keys`` remembers names already checked, so a 1,000-point batch checks each name once.
    """
    if known_keys is None or key not in known_keys:
        validate_key("metric", key)
        if known_keys is not None:
            known_keys.add(key)  # type: ignore[arg-type]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(f"Invalid value {value!r} for metric {key!r}: must be a number")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise InvalidArgumentError(f"Invalid timestamp {timestamp!r} for metric {key!r}: must be an integer (ms)")
    if not MIN_TIMESTAMP_MS <= timestamp <= MAX_TIMESTAMP_MS:
        raise InvalidArgumentError(
            f"Invalid timestamp {timestamp!r} for metric {key!r}: must be milliseconds since 1970 between "
            f"{MIN_TIMESTAMP_MS} and {MAX_TIMESTAMP_MS} (years 1 to 9999)"
        )
    if isinstance(step, bool) or not isinstance(step, int):
        raise InvalidArgumentError(f"Invalid step {step!r} for metric {key!r}: must be an integer")
    if not -(2**63) <= step < 2**63:
        raise InvalidArgumentError(f"Invalid step {step!r} for metric {key!r}: must fit in 64 bits")
    return key, float(value), timestamp, step  # type: ignore[return-value]


def check_time_ms(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"Invalid {name} {value!r}: must be an integer (ms)")
    if not MIN_TIMESTAMP_MS <= value <= MAX_TIMESTAMP_MS:
        raise InvalidArgumentError(
            f"Invalid {name} {value!r}: must be milliseconds since 1970 between {MIN_TIMESTAMP_MS} and "
            f"{MAX_TIMESTAMP_MS} (years 1 to 9999)"
        )


def check_max_results(max_results: int, *, limit: int = MAX_RESULTS_LIMIT) -> None:
    if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= limit:
        raise InvalidArgumentError(f"Invalid max_results {max_results!r}: must be between 1 and {limit}")
