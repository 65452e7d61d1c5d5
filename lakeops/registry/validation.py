"""The registry's input rules: name, alias, version and stage syntax, text and tag limits, ``as_of``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from lakeops.errors import InvalidArgumentError
from lakeops.tracking.validation import MAX_TAG_VALUE_LENGTH, validate_key

MAX_MODEL_NAME_LENGTH = 256
MAX_ALIAS_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 100_000
MAX_SEARCH_MODELS = 1000
DEFAULT_SEARCH_MODELS = 100
MAX_SEARCH_VERSIONS = 200_000
DEFAULT_SEARCH_VERSIONS = 10_000
STAGES = {"none": "None", "staging": "Staging", "production": "Production", "archived": "Archived"}
ARCHIVING_STAGES = ("Staging", "Production")
READY = "READY"

_ALIAS = re.compile(r"^[\w\-]+$")
_VERSION_ALIAS = re.compile(r"^v\d+$", re.IGNORECASE)


def validate_model_name(name: object) -> str:
    """A registered model's name: a non-empty string without '/' (it would break ``models:/`` URIs)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError("Invalid registered model name: must be a non-empty string")
    if len(name) > MAX_MODEL_NAME_LENGTH:
        raise InvalidArgumentError(f"Invalid registered model name: longer than {MAX_MODEL_NAME_LENGTH} characters")
    if "/" in name:
        raise InvalidArgumentError(f"Invalid registered model name {name!r}: must not contain '/'")
    return name


def validate_alias(alias: object) -> str:
    """MLflow's alias rules: word characters and dashes, not ``latest``, not ``v<number>``."""
    if not isinstance(alias, str) or not alias:
        raise InvalidArgumentError("Invalid alias: must be a non-empty string")
    if len(alias) > MAX_ALIAS_LENGTH:
        raise InvalidArgumentError(f"Invalid alias: longer than {MAX_ALIAS_LENGTH} characters")
    if not _ALIAS.match(alias):
        raise InvalidArgumentError(f"Invalid alias {alias!r}: only alphanumerics, underscores and dashes are allowed")
    if alias.lower() == "latest" or _VERSION_ALIAS.match(alias):
        raise InvalidArgumentError(
            f"Invalid alias {alias!r}: 'latest' and 'v<number>' are reserved for version references"
        )
    return alias


def parse_version(version: object) -> int:
    """A version number (MLflow sends it as a string)."""
    if isinstance(version, bool):
        raise InvalidArgumentError(f"Invalid model version {version!r}: must be a positive integer")
    if isinstance(version, int):
        number = version
    elif isinstance(version, str) and version.strip().isdigit():
        number = int(version.strip())
    else:
        raise InvalidArgumentError(f"Invalid model version {version!r}: must be a positive integer")
    if number < 1:
        raise InvalidArgumentError(f"Invalid model version {version!r}: must be a positive integer")
    return number


def parse_stage(stage: object) -> str:
    """A legacy stage name, case-insensitive, in its canonical spelling."""
    found = STAGES.get(str(stage).strip().lower()) if isinstance(stage, str) else None
    if found is None:
        raise InvalidArgumentError(f"Invalid model version stage {stage!r}; use one of {sorted(STAGES.values())}")
    return found


def as_of_ms(as_of: datetime | int | None) -> int | None:
    """``as_of`` as epoch milliseconds (a naive datetime is taken as UTC)."""
    if as_of is None or isinstance(as_of, int):
        return as_of
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    return int(as_of.timestamp() * 1000)


def optional_text(kind: str, value: object, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgumentError(f"Invalid {kind}: must be a string")
    if len(value) > limit:
        raise InvalidArgumentError(f"Invalid {kind}: {len(value)} characters, at most {limit} allowed")
    return value


def check_max_results(max_results: int, limit: int) -> None:
    if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= limit:
        raise InvalidArgumentError(f"Invalid max_results {max_results!r}: must be between 1 and {limit}")


def validate_tags(tags: Mapping[str, object]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in tags.items():
        text = "" if value is None else str(value)
        if len(text) > MAX_TAG_VALUE_LENGTH:
            raise InvalidArgumentError(f"Invalid tag value for {key!r}: longer than {MAX_TAG_VALUE_LENGTH} characters")
        out[validate_key("tag", key)] = text
    return out


def required_text(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"Invalid {kind}: must be a non-empty string")
    return value
