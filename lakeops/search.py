"""MLflow's search language: parse filters and order-by clauses, evaluate them on the state.

Parsed here rather than with MLflow's ``SearchUtils``: importing mlflow pulls in ~200 MB and
seconds of start-up into the server, and its parser is bound to its SQL store. The grammar
is MLflow's (``<type>.<key> <comparator> <value>`` joined by ``AND``; backticks or double
quotes around keys with spaces or dots), with ``IN``/``NOT IN``/``IS [NOT] NULL`` allowed
on every entity type.

Semantics: a comparison on a metric, param or tag a run does not have is false (``!=``
included), as in MLflow; ``IS NULL`` is true exactly then. Metric comparisons follow IEEE
754 (NaN equals nothing). In ordering, missing values sort last in both directions and NaN
sorts above every number.
"""

from __future__ import annotations

import base64
import json
import operator
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from lakeops.errors import InvalidArgumentError
from lakeops.stores.run_index import LIFECYCLE_CODES, NumericColumn, RunIndex, StringColumn
from lakeops.stores.state import ExperimentState

if TYPE_CHECKING:
    # Only the trace search uses polars: imported by the functions that do (~0.6 CPU-s a server start
    # would otherwise pay, whether or not it is ever asked for a trace).
    import polars as pl

# -- tokens ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<backtick>`(?:[^`])*`)
      | (?P<dquote>"(?:[^"\\]|\\.)*")
      | (?P<squote>'(?:[^']|'')*')
      | (?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))(?![\w.])
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][\w]*(?:\.[\w]+)*\.?)
    )""",
    re.VERBOSE,
)

_ENTITY_ALIASES = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
}

RUN_STRING_ATTRIBUTES = {"run_id", "run_name", "status", "user_id", "artifact_uri", "lifecycle_stage", "experiment_id"}
RUN_NUMERIC_ATTRIBUTES = {"start_time", "end_time"}
_ATTRIBUTE_ALIASES = {"created": "start_time", "run name": "run_name", "Created": "start_time"}

_STRING_OPS = {"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN", "IS NULL", "IS NOT NULL"}
_NUMERIC_OPS = {"=", "!=", "<", "<=", ">", ">=", "IS NULL", "IS NOT NULL"}


@dataclass(frozen=True)
class Comparison:
    """One ``<entity>.<key> <op> <value>`` clause."""

    entity: str  # metric, param, tag, attribute
    key: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class OrderClause:
    """One order-by clause."""

    entity: str
    key: str
    ascending: bool


class _Tokens:
    def __init__(self, text: str) -> None:
        self.items: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise InvalidArgumentError(f"Invalid filter near {text[pos : pos + 20]!r}")
            kind = m.lastgroup or ""
            self.items.append((kind, m.group(kind)))
            pos = m.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return self.items[i] if i < len(self.items) else None

    def take(self) -> tuple[str, str]:
        item = self.peek()
        if item is None:
            raise InvalidArgumentError("Invalid filter: unexpected end of expression")
        self.pos += 1
        return item

    def word(self, *words: str) -> bool:
        item = self.peek()
        if item is not None and item[0] == "word" and item[1].upper() in words:
            self.pos += 1
            return True
        return False


def _unquote(kind: str, text: str) -> str:
    if kind == "backtick":
        return text[1:-1]
    if kind == "dquote":
        return text[1:-1].replace('\\"', '"')
    if kind == "squote":
        return text[1:-1].replace("''", "'")
    return text


def _identifier(tokens: _Tokens, entities: dict[str, str], default_entity: str | None) -> tuple[str, str]:
    kind, text = tokens.take()
    if kind in ("backtick", "dquote"):
        if default_entity is None:
            raise InvalidArgumentError(f"Invalid identifier {text}: expected <type>.<key>")
        return default_entity, _unquote(kind, text)
    if kind != "word":
        raise InvalidArgumentError(f"Invalid identifier {text!r}: expected <type>.<key>")
    if "." not in text:
        if default_entity is None:
            raise InvalidArgumentError(f"Invalid identifier {text!r}: expected <type>.<key>")
        return default_entity, text
    prefix, _, rest = text.partition(".")
    entity = entities.get(prefix.lower())
    if entity is None:
        raise InvalidArgumentError(
            f"Invalid entity type {prefix!r} in {text!r}; valid types are {sorted(set(entities))}"
        )
    if rest:
        return entity, rest
    nxt = tokens.take()  # `metrics.` followed by a quoted key
    if nxt[0] not in ("backtick", "dquote"):
        raise InvalidArgumentError(f"Invalid identifier {text!r}: missing key")
    return entity, _unquote(*nxt)


def _value(tokens: _Tokens) -> Any:
    kind, text = tokens.take()
    if kind == "number":
        return float(text) if any(c in text for c in ".eE") else int(text)
    if kind in ("squote", "dquote"):
        return _unquote(kind, text)
    raise InvalidArgumentError(f"Invalid value {text!r}: expected a quoted string or a number")


def parse_filter(
    text: str | None, *, entities: dict[str, str] | None = None, default_entity: str | None = "attribute"
) -> list[Comparison]:
    """Parse an MLflow filter string into comparisons joined by AND."""
    if text is None or not text.strip():
        return []
    entities = entities or _ENTITY_ALIASES
    tokens = _Tokens(text)
    out: list[Comparison] = []
    while True:
        entity, key = _identifier(tokens, entities, default_entity)
        if entity == "attribute":
            key = _ATTRIBUTE_ALIASES.get(key, key)
        out.append(_comparison(tokens, entity, key))
        if tokens.peek() is None:
            return out
        if not tokens.word("AND"):
            raise InvalidArgumentError(f"Invalid clause {tokens.peek()[1]!r}: clauses must be joined by AND")  # type: ignore[index]


def _comparison(tokens: _Tokens, entity: str, key: str) -> Comparison:
    if tokens.word("IS"):
        negated = tokens.word("NOT")
        if not tokens.word("NULL"):
            raise InvalidArgumentError("Invalid filter: expected NULL after IS")
        return Comparison(entity, key, "IS NOT NULL" if negated else "IS NULL")
    negated = tokens.word("NOT")
    if tokens.word("IN"):
        if tokens.take() != ("punct", "("):
            raise InvalidArgumentError("Invalid filter: IN takes a parenthesised list, e.g. IN ('a', 'b')")
        values = [_value(tokens)]
        while (sep := tokens.take()) == ("punct", ","):
            values.append(_value(tokens))
        if sep != ("punct", ")"):
            raise InvalidArgumentError("Invalid filter: unterminated IN list")
        return Comparison(entity, key, "NOT IN" if negated else "IN", tuple(values))
    for word in ("LIKE", "ILIKE"):
        if tokens.word(word):
            if negated:
                raise InvalidArgumentError(f"Invalid filter: NOT {word} is not supported")
            value = _value(tokens)
            if not isinstance(value, str):
                raise InvalidArgumentError(f"Invalid filter: {word} needs a string")
            return Comparison(entity, key, word, value)
    if negated:
        raise InvalidArgumentError("Invalid filter: NOT must be followed by IN")
    kind, op = tokens.take()
    if kind != "op":
        raise InvalidArgumentError(f"Invalid comparator {op!r}")
    return Comparison(entity, key, "!=" if op == "<>" else op, _value(tokens))


def parse_order_by(
    clauses: Sequence[str] | None, *, default_entity: str | None = "attribute", validate: bool = True
) -> list[OrderClause]:
    """Parse ``["metrics.acc DESC", "attributes.start_time"]`` (run attributes checked unless not ``validate``)."""
    out: list[OrderClause] = []
    for clause in clauses or []:
        tokens = _Tokens(clause)
        entity, key = _identifier(
            tokens, _ENTITY_ALIASES if validate else {**_ENTITY_ALIASES, "trace": "attribute"}, default_entity
        )
        if entity == "attribute" and validate:
            key = _ATTRIBUTE_ALIASES.get(key, key)
            if key not in RUN_STRING_ATTRIBUTES | RUN_NUMERIC_ATTRIBUTES:
                raise InvalidArgumentError(f"Invalid order_by attribute {key!r}")
        ascending = True
        if tokens.word("DESC"):
            ascending = False
        else:
            tokens.word("ASC")
        if tokens.peek() is not None:
            raise InvalidArgumentError(f"Invalid order_by clause {clause!r}")
        out.append(OrderClause(entity, key, ascending))
    return out


# -- evaluation on runs: vectorised over the run index -----------------------------------------


def _null_test(getter: Callable[[Any], Any], *, want_null: bool) -> Callable[[Any], bool]:
    return lambda entity: (getter(entity) is None) == want_null


def _value_test(getter: Callable[[Any], Any], check: Callable[[Any], Any]) -> Callable[[Any], bool]:
    def test(entity: Any) -> bool:
        value = getter(entity)
        return value is not None and bool(check(value))

    return test


def like_pattern(pattern: str, *, case_insensitive: bool) -> re.Pattern[str]:
    """A SQL ``LIKE``/``ILIKE`` pattern (``%`` any text, ``_`` one character) as a regex to ``fullmatch``."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if case_insensitive else 0))


def _string_test(op: str, value: Any) -> Callable[[str], bool]:
    if op in ("LIKE", "ILIKE"):
        rx = like_pattern(value, case_insensitive=op == "ILIKE")
        return lambda v: rx.fullmatch(v) is not None
    if op in ("IN", "NOT IN"):
        members = {str(v) for v in value}
        return (lambda v: v in members) if op == "IN" else (lambda v: v not in members)
    if not isinstance(value, str):
        raise InvalidArgumentError(f"Invalid filter: {op} on a string needs a quoted string, got {value!r}")
    if op == "=":
        return lambda v: v == value
    if op == "!=":
        return lambda v: v != value
    raise InvalidArgumentError(f"Invalid comparator {op!r} for a string; use one of {sorted(_STRING_OPS)}")


_NUMERIC: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _numeric_test(op: str, value: Any) -> Callable[[Any], Any]:
    """A comparison with a number; works on one float and on a numpy array alike."""
    if op in ("IN", "NOT IN"):
        if not all(isinstance(v, int | float) for v in value):
            raise InvalidArgumentError("Invalid filter: IN on a number needs numbers")
        members = np.array([float(v) for v in value])
        return (lambda v: np.isin(v, members)) if op == "IN" else (lambda v: ~np.isin(v, members))
    cmp = _NUMERIC.get(op)
    if cmp is None:
        raise InvalidArgumentError(f"Invalid comparator {op!r} for a number; use one of {sorted(_NUMERIC_OPS)}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(f"Invalid filter: {op} on a number needs a number, got {value!r}")
    target = float(value)
    return lambda v: cmp(v, target)


def _is_numeric(entity: str, key: str) -> bool:
    return entity == "metric" or (entity == "attribute" and key in RUN_NUMERIC_ATTRIBUTES)


def _check_run_key(entity: str, key: str) -> None:
    if entity == "attribute" and key not in RUN_STRING_ATTRIBUTES | RUN_NUMERIC_ATTRIBUTES:
        raise InvalidArgumentError(
            f"Invalid attribute key {key!r}; valid keys are {sorted(RUN_STRING_ATTRIBUTES | RUN_NUMERIC_ATTRIBUTES)}"
        )


def _run_mask(index: RunIndex, c: Comparison, size: int) -> np.ndarray:
    """Rows ``< size`` where the comparison holds (a run without the value never matches, ``IS NULL`` aside)."""
    column = index.column(c.entity, c.key)
    if isinstance(column, NumericColumn):
        present = column.present[:size]
        if c.op in ("IS NULL", "IS NOT NULL"):
            return ~present if c.op == "IS NULL" else present.copy()
        values = column.values[:size]
        if column.values.dtype != np.float64:
            values = values.astype(np.float64)  # compared as floats, as MLflow's Python does
        matched: np.ndarray = present & np.asarray(_numeric_test(c.op, c.value)(values))
        return matched
    # Copied before the distinct values are counted: a concurrent write may add a value, and every
    # code in the copy then names one of the values counted.
    codes = column.codes[:size].copy()
    if c.op in ("IS NULL", "IS NOT NULL"):
        return codes < 0 if c.op == "IS NULL" else codes >= 0
    test = _string_test(c.op, c.value)
    distinct = len(column.values)
    truth = np.zeros(distinct + 1, dtype=bool)  # the last cell answers code -1 (no value)
    if c.op in ("=", "IN"):  # the matching values by lookup, not by testing every distinct value
        wanted = [str(v) for v in c.value] if c.op == "IN" else [c.value]
        truth[[code for v in wanted if (code := column.code_of.get(v)) is not None and code < distinct]] = True
    else:
        truth[:distinct] = np.fromiter(map(test, column.values[:distinct]), dtype=bool, count=distinct)
    found: np.ndarray = truth[codes]
    return found


def validate_run_filter(comparisons: list[Comparison]) -> None:
    """Refuse what no run could be compared with, whether or not there are runs to search."""
    for c in comparisons:
        _check_run_key(c.entity, c.key)
        if c.op in ("IS NULL", "IS NOT NULL"):
            continue
        if c.entity == "param" and c.op in ("<", "<=", ">", ">="):
            raise InvalidArgumentError(f"Invalid comparator {c.op!r} for param {c.key!r}: params are strings")
        if _is_numeric(c.entity, c.key):
            _numeric_test(c.op, c.value)
        else:
            _string_test(c.op, c.value)


_MISSING = 2  # order classes: 0 a value, 1 NaN (above every number), 2 no value (last either way)


def _order_keys(index: RunIndex, clause: OrderClause, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class, value) of each row for one clause: ascending lexicographic order is the wanted order."""
    column = index.column(clause.entity, clause.key)
    if isinstance(column, StringColumn):
        codes = column.codes[rows]
        present = codes >= 0
        ranks = column.ranks()[np.where(present, codes, 0)] if len(column.values) else np.zeros(len(rows), np.int64)
        value = np.where(present, ranks if clause.ascending else -ranks, 0)
        return np.where(present, 0, _MISSING).astype(np.int8), value
    present = column.present[rows]
    values = column.values[rows]
    if values.dtype == np.float64:
        nan = np.isnan(values)
        number = present & ~nan
        nan_class = 1 if clause.ascending else 0
        number_class = 0 if clause.ascending else 1
        cls = np.where(number, number_class, np.where(present, nan_class, _MISSING)).astype(np.int8)
        return cls, np.where(number, values if clause.ascending else -values, 0.0)
    cls = np.where(present, 0, _MISSING).astype(np.int8)
    return cls, np.where(present, values if clause.ascending else ~values, 0)  # ~v: descending without overflow


class RankedRuns:
    """The runs one search matched, with their sort keys: ordered on demand, top-k first.

    A snapshot: later pages of the same search slice it, whatever was written since (the keys
    were copied out of the index when the search ran; about 20 bytes per matched run and clause).
    """

    _FULL_SORT_BELOW = 4096

    def __init__(self, index: RunIndex, rows: np.ndarray, order: list[OrderClause]) -> None:
        clauses = [*order, OrderClause("attribute", "start_time", ascending=False)]
        self._index = index
        self._rows = rows
        self._keys = [_order_keys(index, clause, rows) for clause in clauses]
        self._ordered: np.ndarray | None = None  # positions, once fully sorted

    def __len__(self) -> int:
        return len(self._rows)

    def page(self, offset: int, limit: int) -> list[str]:
        """Run ids at positions ``offset .. offset + limit`` of the order."""
        positions = self._top(offset + limit)[offset : offset + limit]
        return [run_id.decode() for run_id in self._index.run_ids[self._rows[positions]]]

    def _sorted(self, positions: np.ndarray) -> np.ndarray:
        # The last tie-break: run id ascending (a row's run id never changes, so it is read, not copied).
        keys: list[np.ndarray] = [self._index.run_ids[self._rows[positions]]]
        for cls, value in reversed(self._keys):
            keys.extend((value[positions], cls[positions]))
        return positions[np.lexsort(keys)]

    def _top(self, k: int) -> np.ndarray:
        n = len(self._rows)
        if self._ordered is None and (n <= self._FULL_SORT_BELOW or 4 * k >= n):
            self._ordered = self._sorted(np.arange(n))
        if self._ordered is not None:
            return self._ordered[:k]
        return self._sorted(self._candidates(np.arange(n), 0, k))[:k]

    def _candidates(self, positions: np.ndarray, clause: int, k: int) -> np.ndarray:
        """A subset of ``positions`` holding its first ``k`` in the order (and few others).

        Classes come in order; inside the class where the k-th row falls, a partition finds the
        k-th value, every row below it is in, and the rows tied with it are narrowed by the next
        clause the same way.
        """
        if len(positions) <= max(4 * k, 256) or clause == len(self._keys):
            return positions
        cls_all, value_all = self._keys[clause]
        cls = cls_all[positions]
        chosen: list[np.ndarray] = []
        need = k
        for group in (0, 1, _MISSING):
            members = positions[cls == group]
            if len(members) == 0:
                continue
            if len(members) <= need:
                chosen.append(members)
                need -= len(members)
                if need == 0:
                    break
                continue
            values = value_all[members]
            kth = np.partition(values, need - 1)[need - 1]
            below = members[values < kth]
            chosen.append(below)
            chosen.append(self._candidates(members[values == kth], clause + 1, need - len(below)))
            break
        return np.concatenate(chosen) if chosen else positions[:0]


def search_run_index(
    index: RunIndex,
    experiment_ids: Sequence[str],
    stages: set[str],
    comparisons: list[Comparison],
    order: list[OrderClause],
) -> RankedRuns:
    """The runs of ``experiment_ids`` in lifecycle ``stages`` matching every comparison."""
    for clause in order:
        _check_run_key(clause.entity, clause.key)
    return RankedRuns(index, _matching_rows(index, experiment_ids, stages, comparisons), order)


def _matching_rows(
    index: RunIndex, experiment_ids: Sequence[str], stages: set[str], comparisons: list[Comparison]
) -> np.ndarray:
    validate_run_filter(comparisons)
    size = index.size
    mask = np.isin(index.experiments.codes[:size], index.experiment_codes(list(experiment_ids)))
    admitted = [code for stage, code in LIFECYCLE_CODES.items() if stage in stages]
    mask &= np.isin(index.lifecycle[:size], np.array(admitted, dtype=np.int8))
    for c in comparisons:
        if not mask.any():
            break
        mask &= _run_mask(index, c, size)
    return np.flatnonzero(mask)


# -- groups of runs -----------------------------------------------------------------------------

_GROUP_ENTITIES = {"param", "tag"}
_GROUP_ATTRIBUTES = {"status", "user_id", "run_name"}


@dataclass(frozen=True)
class MetricSummary:
    """A metric's latest values over the runs of a group that have a finite one."""

    count: int
    min: float
    mean: float
    max: float


@dataclass(frozen=True)
class RunGroup:
    """The runs sharing one value of the grouping key (``value`` None: the runs without it)."""

    value: str | None
    count: int
    metrics: dict[str, MetricSummary]


def parse_group_by(text: str) -> tuple[str, str]:
    """``params.lr`` (or ``tags.team``, ``attributes.status``) as (entity, key)."""
    clauses = parse_order_by([text])
    clause = clauses[0] if clauses else None
    if (
        clause is None
        or not clause.ascending
        or (
            clause.entity not in _GROUP_ENTITIES
            and not (clause.entity == "attribute" and clause.key in _GROUP_ATTRIBUTES)
        )
    ):
        raise InvalidArgumentError(
            f"Invalid group_by {text!r}: give one param, tag or attribute "
            f"({', '.join(sorted(_GROUP_ATTRIBUTES))}), as in 'params.lr'"
        )
    return clause.entity, clause.key


def _group_order(values: list[str | None]) -> list[int]:
    """Positions of ``values`` in display order: numerically when every value is a number, else as text;
    the missing value last."""
    present = [i for i, v in enumerate(values) if v is not None]
    try:
        numbers = {i: float(cast(str, values[i])) for i in present}
        present.sort(key=lambda i: (numbers[i], cast(str, values[i])))
    except ValueError:
        present.sort(key=lambda i: cast(str, values[i]))
    return present + [i for i, v in enumerate(values) if v is None]


def group_run_index(
    index: RunIndex,
    experiment_ids: Sequence[str],
    stages: set[str],
    comparisons: list[Comparison],
    *,
    entity: str,
    key: str,
    metrics: Sequence[str] = (),
) -> list[RunGroup]:
    """The matching runs grouped by the value of ``entity.key``: a count and a summary of each of
    ``metrics`` (latest values) per group. Vectorised: one ``bincount`` per figure over the index."""
    rows = _matching_rows(index, experiment_ids, stages, comparisons)
    column = index.column(entity, key)
    if not isinstance(column, StringColumn):  # params, tags and the string attributes are
        raise InvalidArgumentError(f"Cannot group runs by {entity} {key!r}")
    distinct = len(column.values)
    codes = column.codes[rows].astype(np.int64)
    codes[codes < 0] = distinct  # the runs without the key: one more group
    counts = np.bincount(codes, minlength=distinct + 1)
    summaries: dict[str, tuple[np.ndarray, ...]] = {}
    for metric in dict.fromkeys(metrics):
        _check_run_key("metric", metric)
        values_column = index.column("metric", metric)
        if not isinstance(values_column, NumericColumn):  # metrics are
            raise InvalidArgumentError(f"Invalid metric {metric!r}")
        values = values_column.values[rows]
        finite = values_column.present[rows] & np.isfinite(values)
        group_of, kept = codes[finite], values[finite]
        n = np.bincount(group_of, minlength=distinct + 1)
        total = np.bincount(group_of, weights=kept, minlength=distinct + 1)
        low = np.full(distinct + 1, np.inf)
        high = np.full(distinct + 1, -np.inf)
        np.minimum.at(low, group_of, kept)
        np.maximum.at(high, group_of, kept)
        summaries[metric] = (n, total, low, high)
    found = [int(g) for g in np.flatnonzero(counts)]
    labels: list[str | None] = [column.values[g] if g < distinct else None for g in found]
    groups = []
    for position in _group_order(labels):
        g = found[position]
        figures = {
            metric: MetricSummary(int(n[g]), float(low[g]), float(total[g] / n[g]), float(high[g]))
            for metric, (n, total, low, high) in summaries.items()
            if n[g]
        }
        groups.append(RunGroup(labels[position], int(counts[g]), figures))
    return groups


# -- page tokens ------------------------------------------------------------------------------


def encode_token(payload: dict[str, Any]) -> str:
    """An opaque page token."""
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_token(token: str | None) -> dict[str, Any]:
    """Read a page token; a malformed one is an ``InvalidArgumentError``."""
    if not token:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"Invalid page token {token!r}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("offset", 0), int) or payload.get("offset", 0) < 0:
        raise InvalidArgumentError(f"Invalid page token {token!r}")
    return payload


class Ranked(Protocol):
    """Ordered search results that hand out pages (a list of ids, or ``RankedRuns``)."""

    def __len__(self) -> int: ...

    def page(self, offset: int, limit: int) -> list[str]: ...


class _RankedList:
    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def page(self, offset: int, limit: int) -> list[str]:
        return self.ids[offset : offset + limit]


class PinnedResults:
    """Search results pinned by page tokens, so paging is stable while writes continue.

    A search that needs more than one page stores what it found under a random pin; the page
    token names the pin and an offset, and later pages slice it. The pins are a bounded LRU in
    this process (by count and by the results they hold): a token that outlives its pin
    (restart, another replica, eviction) falls back to re-running the search and slicing at the
    offset.
    """

    def __init__(self, capacity: int = 256, max_results_held: int = 4_000_000) -> None:
        self._capacity = capacity
        self._max_held = max_results_held
        self._held = 0
        self._pins: OrderedDict[str, tuple[str, Ranked]] = OrderedDict()

    def pin(self, fingerprint: str, results: Ranked) -> str:
        """Remember ``results`` for later pages; returns the pin id."""
        pin_id = uuid.uuid4().hex[:16]
        self._pins[pin_id] = (fingerprint, results)
        self._held += len(results)
        while len(self._pins) > 1 and (len(self._pins) > self._capacity or self._held > self._max_held):
            _pin, (_fp, dropped) = self._pins.popitem(last=False)
            self._held -= len(dropped)
        return pin_id

    def get(self, pin_id: str | None, fingerprint: str) -> Ranked | None:
        """The pinned results, if the pin still exists and belongs to the same query."""
        if pin_id is None:
            return None
        entry = self._pins.get(pin_id)
        if entry is None or entry[0] != fingerprint:
            return None
        self._pins.move_to_end(pin_id)
        return entry[1]


def paginate(
    results_now: Callable[[], list[str] | Ranked],
    *,
    fingerprint: str,
    max_results: int,
    page_token: str | None,
    pins: PinnedResults,
) -> tuple[list[str], str | None]:
    """Return one page of ids and the token for the next page."""
    token = decode_token(page_token)
    offset = int(token.get("offset", 0))
    if token and token.get("query") not in (None, fingerprint):
        raise InvalidArgumentError("Invalid page token: it belongs to a different search")
    pinned = pins.get(token.get("pin"), fingerprint)
    results: Ranked
    if pinned is not None:
        results = pinned
    else:
        found = results_now()
        results = _RankedList(found) if isinstance(found, list) else found
    page = results.page(offset, max_results)
    if offset + max_results >= len(results):
        return page, None
    pin_id = token.get("pin") if pinned is not None else pins.pin(fingerprint, results)
    return page, encode_token({"offset": offset + max_results, "pin": pin_id, "query": fingerprint})


# -- experiments -------------------------------------------------------------------------------

_EXPERIMENT_ENTITIES = {
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "tag": "tag",
    "tags": "tag",
}
_EXPERIMENT_ATTRIBUTES = {"name", "experiment_id", "creation_time", "last_update_time", "lifecycle_stage"}


def _tag_getter(key: str) -> Callable[[Any], str | None]:
    return lambda e: e.tags.get(key)


def _param_getter(key: str) -> Callable[[Any], str | None]:
    return lambda m: m.params.get(key)


_GETTERS: dict[str, Callable[[str], Callable[[Any], Any]]] = {
    "tag": _tag_getter,
    "param": _param_getter,
    "attribute": operator.attrgetter,
}


def compile_object_filter(
    text: str | None,
    *,
    noun: str,
    entities: dict[str, str],
    attributes: Collection[str],
    numeric: Collection[str] = (),
    missing_differs: Collection[str] = (),
) -> Callable[[Any], bool]:
    """One predicate for MLflow's filter language over objects held in memory.

    The one compiler for experiments, logged models, registered models and model versions (runs
    are filtered vectorised over the run index, ``search_run_index``): ``attributes`` are the
    valid attribute keys (``numeric`` the ones compared as numbers), tags and params are read
    from the object's ``tags`` and ``params``. A comparison on a value the object lacks is false,
    except ``!=`` and ``NOT IN`` on the entity types in ``missing_differs`` (MLflow's registry:
    a missing tag differs from any value).
    """
    tests: list[Callable[[Any], bool]] = []
    for c in parse_filter(text, entities=entities, default_entity="attribute"):
        if c.entity == "attribute" and c.key not in attributes:
            raise InvalidArgumentError(f"Invalid attribute {c.key!r} in a {noun} filter; valid: {sorted(attributes)}")
        if c.entity not in _GETTERS:
            raise InvalidArgumentError(f"Filtering {noun}s on {c.entity}s is not supported yet")
        getter = _GETTERS[c.entity](c.key)
        if c.op in ("IS NULL", "IS NOT NULL"):
            tests.append(_null_test(getter, want_null=c.op == "IS NULL"))
            continue
        is_number = c.entity == "attribute" and c.key in numeric
        check: Callable[[Any], Any] = _numeric_test(c.op, c.value) if is_number else _string_test(c.op, c.value)
        if c.entity in missing_differs and c.op in ("!=", "NOT IN"):
            tests.append(_missing_or(getter, check))
        else:
            tests.append(_value_test(getter, check))
    return lambda e: all(t(e) for t in tests)


def _missing_or(getter: Callable[[Any], Any], check: Callable[[Any], Any]) -> Callable[[Any], bool]:
    def test(entity: Any) -> bool:
        value = getter(entity)
        return value is None or bool(check(value))

    return test


def compile_experiment_filter(text: str | None) -> Callable[[ExperimentState], bool]:
    """Predicate for MLflow's experiment filter (name and tags; = != LIKE ILIKE and friends)."""
    return compile_object_filter(
        text,
        noun="experiment",
        entities=_EXPERIMENT_ENTITIES,
        attributes=_EXPERIMENT_ATTRIBUTES,
        numeric=("creation_time", "last_update_time"),
    )


def sort_experiments(experiments: list[ExperimentState], order_by: Sequence[str] | None) -> list[ExperimentState]:
    """Order experiments; default is MLflow's: creation_time DESC, then experiment_id."""
    out = sorted(experiments, key=lambda e: e.experiment_id)
    clauses: list[tuple[str, bool]] = []
    for clause in order_by or ["creation_time DESC"]:
        parts = clause.strip().split()
        key = parts[0].split(".", 1)[-1] if parts else ""
        if (
            key not in _EXPERIMENT_ATTRIBUTES
            or len(parts) > 2
            or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC"))
        ):
            raise InvalidArgumentError(f"Invalid order_by clause {clause!r}")
        clauses.append((key, len(parts) == 1 or parts[1].upper() == "ASC"))
    for key, ascending in reversed(clauses):
        out.sort(key=operator.attrgetter(key), reverse=not ascending)
    return out


# -- logged models ---------------------------------------------------------------------------------

_LOGGED_MODEL_ENTITIES = {
    **_EXPERIMENT_ENTITIES,
    "param": "param",
    "params": "param",
    "metric": "metric",
    "metrics": "metric",
}
_LOGGED_MODEL_ATTRIBUTES = {
    "model_id",
    "name",
    "status",
    "model_type",
    "source_run_id",
    "experiment_id",
    "creation_time",
}


def compile_logged_model_filter(text: str | None) -> Callable[[Any], bool]:
    """Predicate for MLflow's logged-model filter over attributes, params and tags."""
    return compile_object_filter(
        text,
        noun="logged model",
        entities=_LOGGED_MODEL_ENTITIES,
        attributes=_LOGGED_MODEL_ATTRIBUTES,
        numeric=("creation_time",),
    )


# -- traces: columnar, over a frame of current traces ---------------------------------------------------

_TRACE_ENTITIES = {
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "trace": "attribute",
    "metadata": "metadata",
    "request_metadata": "metadata",
    "feedback": "feedback",
    "expectation": "expectation",
}
# Attribute keys -> the trace frame's column (numbers are milliseconds).
_TRACE_NUMERIC = {
    "timestamp_ms": "request_time",
    "timestamp": "request_time",
    "execution_time_ms": "execution_duration",
    "execution_time": "execution_duration",
    "end_time_ms": "end_time",
    "end_time": "end_time",
}
_TRACE_STRING = {
    "request_id": "trace_id",
    "trace_id": "trace_id",
    "status": "state",
    "state": "state",
    "client_request_id": "client_request_id",
    "name": "name",
    "run_id": "run_id",
    "experiment_id": "experiment_id",
}
TRACE_NAME_TAG = "mlflow.traceName"
TRACE_RUN_METADATA = "mlflow.sourceRun"


def _as_text(value: Any) -> str | None:
    """A value compared as a string: booleans as JSON writes them (``feedback.ok = 'true'``)."""
    if value is None:
        return None
    return json.dumps(value) if isinstance(value, bool) else str(value)


class TraceValues(Protocol):
    """Where the trace search finds what the frame of current traces does not hold as columns."""

    def tag(self, key: str) -> pl.DataFrame:
        """``trace_id`` and ``value`` of the traces that have tag ``key``."""
        ...

    def metadata(self, key: str) -> pl.DataFrame:
        """``trace_id`` and ``value`` of the traces whose metadata has ``key``."""
        ...

    def assessment(self, kind: str, name: str) -> list[tuple[str, Any]]:
        """``(trace_id, value)`` of the first valid ``kind`` assessment named ``name`` of each trace that has one:
        its value if a string or number, else its JSON text."""
        ...


@dataclass(frozen=True)
class TraceCondition:
    """One clause of a trace filter, checked when compiled, evaluated over columns.

    ``source`` says where the values are: a ``column`` of the trace frame, a ``tag``, ``metadata``, an
    ``assessment`` (``kind`` feedback or expectation), or ``run`` (``run_id =``/``IN``: the run a trace
    was recorded in or any run it is linked to, as MLflow matches).
    """

    source: str
    key: str
    op: str
    value: Any
    numeric: bool
    check: Callable[[Any], Any] | None  # the test of one present value; None for IS [NOT] NULL
    kind: str | None = None


def compile_trace_filter(text: str | None) -> list[TraceCondition]:
    """MLflow's trace filter: attributes (``trace.status``, ``timestamp_ms``, ``execution_time_ms``,
    ``name``, ``run_id``, ...), ``tags.<k>``, ``metadata.<k>``, and ``feedback.<name>`` /
    ``expectation.<name>`` (the value of a valid assessment), joined by AND.

    Raises:
        InvalidArgumentError: an unknown attribute, or a comparator or value its type does not allow.
    """
    out: list[TraceCondition] = []
    for c in parse_filter(text, entities=_TRACE_ENTITIES, default_entity="attribute"):
        source, key, kind, numeric = c.entity, c.key, None, False
        if c.entity in ("feedback", "expectation"):
            source, kind = "assessment", c.entity
            numeric = isinstance(c.value, int | float) and not isinstance(c.value, bool)
        elif c.entity == "attribute":
            if c.key not in _TRACE_NUMERIC and c.key not in _TRACE_STRING:
                raise InvalidArgumentError(
                    f"Invalid trace attribute {c.key!r}; valid: {sorted({*_TRACE_NUMERIC, *_TRACE_STRING})}"
                )
            source, key = _trace_attribute_source(c.key)
            numeric = c.key in _TRACE_NUMERIC
            if key == TRACE_RUN_METADATA and c.op in ("=", "IN"):
                runs = tuple(str(v) for v in c.value) if isinstance(c.value, tuple) else (str(c.value),)
                out.append(TraceCondition("run", key, c.op, runs, False, None))
                continue
        check: Callable[[Any], Any] | None = None
        if c.op not in ("IS NULL", "IS NOT NULL"):
            if numeric:
                check = _numeric_test(c.op, c.value)
            else:
                value = tuple(str(v) for v in c.value) if isinstance(c.value, tuple) else c.value
                check = _string_test(c.op, value)
                c = Comparison(c.entity, c.key, c.op, value)
        out.append(TraceCondition(source, key, c.op, c.value, numeric, check, kind))
    return out


def _trace_attribute_source(key: str) -> tuple[str, str]:
    """Where an attribute's values are: the trace's name is a tag, its run a metadata entry, the rest columns."""
    column = _TRACE_NUMERIC.get(key) or _TRACE_STRING[key]
    if column == "name":
        return "tag", TRACE_NAME_TAG
    if column == "run_id":
        return "metadata", TRACE_RUN_METADATA
    return "column", column


def search_trace_frame(
    frame: pl.DataFrame,
    conditions: Sequence[TraceCondition],
    order_by: Sequence[str] | None,
    values: TraceValues,
    *,
    offset: int,
    limit: int,
) -> tuple[pl.DataFrame, int]:
    """One page of the rows of ``frame`` (current traces: ``trace_id``, ``experiment_id``, ``state``,
    ``client_request_id``, ``request_time``, ``execution_duration``, ``linked_run_ids``) that satisfy
    every condition, in MLflow's order: ``order_by`` (default newest first), a missing value last in
    either direction, then trace id; and how many rows satisfy them.

    Raises:
        InvalidArgumentError: an order-by key traces do not have.
    """
    import polars as pl  # deferred: see the imports at the top

    sort_keys = _trace_sort_keys(order_by)
    frame = frame.with_columns((pl.col("request_time") + pl.col("execution_duration")).alias("end_time"))
    for condition in conditions:
        frame = frame.filter(_trace_mask(frame, condition, values))
    by: list[pl.Expr] = []
    descending: list[bool] = []
    for i, (source, key, ascending) in enumerate(sort_keys):
        if source == "column":
            by.append(pl.col(key))
        else:
            found = (values.tag(key) if source == "tag" else values.metadata(key)).rename({"value": f"_order{i}"})
            frame = frame.join(found, on="trace_id", how="left")
            by.append(pl.col(f"_order{i}"))
        descending.append(not ascending)
    page = (  # a sort then a slice: polars keeps only the top rows instead of sorting them all
        frame.lazy()
        .sort([*by, pl.col("trace_id")], descending=[*descending, False], nulls_last=True)
        .slice(offset, limit)
        .collect()
    )
    return page, frame.height


def _trace_sort_keys(order_by: Sequence[str] | None) -> list[tuple[str, str, bool]]:
    keys = []
    for clause in parse_order_by(order_by or ["timestamp_ms DESC"], default_entity="attribute", validate=False):
        if clause.entity == "tag":
            keys.append(("tag", clause.key, clause.ascending))
        elif clause.key in _TRACE_NUMERIC or clause.key in _TRACE_STRING:
            keys.append((*_trace_attribute_source(clause.key), clause.ascending))
        else:
            raise InvalidArgumentError(f"Invalid order_by key {clause.key!r} for traces")
    return keys


def _trace_mask(frame: pl.DataFrame, c: TraceCondition, values: TraceValues) -> pl.Series:
    """Where condition ``c`` holds on ``frame``'s rows; a trace without the value never matches but for IS NULL."""
    import polars as pl  # deferred: see the imports at the top

    ids = frame.get_column("trace_id")
    if c.source == "run":  # recorded in one of the runs, or linked to one since
        runs = list(c.value)
        recorded = values.metadata(TRACE_RUN_METADATA).filter(pl.col("value").is_in(runs)).get_column("trace_id")
        linked = frame.get_column("linked_run_ids").list.eval(pl.element().is_in(runs)).list.any().fill_null(False)
        return ids.is_in(recorded.implode()) | linked
    if c.source == "assessment":
        assert c.kind is not None
        assessed = values.assessment(c.kind, c.key)
        if c.check is None:
            return ids.is_in(pl.Series([t for t, _v in assessed], dtype=pl.String).implode()) != (c.op == "IS NULL")
        check = c.check
        hits = [t for t, v in assessed if bool(check(v if c.numeric else _as_text(v)))]
        return ids.is_in(pl.Series(hits, dtype=pl.String).implode())
    if c.source == "column":
        column = frame.get_column(c.key)
        if c.check is None:
            return column.is_null() if c.op == "IS NULL" else column.is_not_null()
        if c.numeric:
            present = column.is_not_null()
            numbers = column.cast(pl.Float64).fill_null(0.0).to_numpy()
            return present & pl.Series(np.asarray(c.check(numbers), dtype=bool))
        return _string_mask(column, c)
    found = values.tag(c.key) if c.source == "tag" else values.metadata(c.key)
    if c.check is None:
        return ids.is_in(found.get_column("trace_id").implode()) != (c.op == "IS NULL")
    matched = found.filter(_string_mask(found.get_column("value"), c)).get_column("trace_id")
    return ids.is_in(matched.implode())


def _string_mask(column: pl.Series, c: TraceCondition) -> pl.Series:
    """Where a string test holds on ``column`` (false where it is null): comparisons vectorised, patterns
    run once per distinct value."""
    import polars as pl  # deferred: see the imports at the top

    assert c.check is not None
    if c.op == "=":
        mask: pl.Series = column == c.value
    elif c.op == "!=":
        mask = column != c.value
    elif c.op in ("IN", "NOT IN"):
        members = pl.Series(list(c.value), dtype=pl.String).implode()
        mask = column.is_in(members) if c.op == "IN" else ~column.is_in(members)
    else:
        check = c.check
        matching = [v for v in column.drop_nulls().unique().to_list() if check(v)]
        mask = column.is_in(pl.Series(matching, dtype=pl.String).implode())
    return (mask & column.is_not_null()).fill_null(False)
