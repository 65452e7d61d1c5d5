"""Comments on runs, registered models and model versions, with @mentions.

A comment is a row of the append-only Iceberg table ``comment_changes``: posted once
("create"), and deleted by a second row for the same ``comment_id`` ("delete", ``is_deleted``);
nothing is ever rewritten. Rows go through ``store.write`` like every other entity (write-ahead
log, group commit). Comments are read on demand for one target, committed rows merged with rows
still queued (``scan_with_pending``), so a poster reads their own comment at once; they are
never folded into the in-memory state, which holds only what every request needs.

Targets are written ``run:<run_id>``, ``model:<name>`` or ``version:<name>/<version>``. A model is
stored by its ``registered_model_id``, so its comments follow it through a rename.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, BooleanExpression, EqualTo

from catalog.tables import COMMENT_CHANGES
from lakeops.actor import ActorField
from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.stores.epochs import epoch_ints
from lakeops.stores.iceberg import IcebergStore, Rows
from lakeops.stores.state import TrackingState

TARGET_KINDS = ("run", "model", "version")
# pyiceberg's pydantic-generated signature for EqualTo confuses mypy; this is its documented call form.
_equal_to = cast(Callable[[str, Any], BooleanExpression], EqualTo)
MAX_BODY_LENGTH = 10_000
MAX_AUTHOR_LENGTH = 128
# @name: letters, digits and . _ - (an e-mail's local part, a login); not preceded by a word character,
# so "ana@example.com" mentions nobody.
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][A-Za-z0-9._-]{0,63})")


@dataclass(frozen=True)
class Target:
    """What a comment is about: its kind, the stable id it is stored under, and the name people use."""

    kind: str
    target_id: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Comment:
    """One comment."""

    comment_id: str
    target: str  # as given: run:<id>, model:<name>, version:<name>/<n>
    author: str
    body: str
    mentions: list[str]
    created_at: int  # ms since the epoch

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields."""
        return {
            "comment_id": self.comment_id,
            "target": self.target,
            "author": self.author,
            "body": self.body,
            "mentions": list(self.mentions),
            "created_at": self.created_at,
        }


def mentions_in(body: str) -> list[str]:
    """The user names @mentioned in ``body``, each once, in order of appearance."""
    return list(dict.fromkeys(m.rstrip(".-") for m in _MENTION.findall(body)))


def _parse_target(text: object) -> tuple[str, str]:
    if not isinstance(text, str) or ":" not in text:
        raise InvalidArgumentError(
            f"Invalid comment target {text!r}: write run:<run_id>, model:<name> or version:<name>/<version>"
        )
    kind, _, rest = text.partition(":")
    if kind not in TARGET_KINDS or not rest:
        raise InvalidArgumentError(
            f"Invalid comment target {text!r}: the kind must be one of {', '.join(TARGET_KINDS)}, followed by an id"
        )
    return kind, rest


def resolve_target(state: TrackingState, text: object) -> Target:
    """The stored form of a target, checked against the current state.

    Raises:
        InvalidArgumentError: a malformed target.
        NotFoundError: no such run, model or version.
    """
    kind, rest = _parse_target(text)
    if kind == "run":
        if rest not in state.runs:
            raise NotFoundError(f"Run '{rest}' not found", details={"run_id": rest})
        return Target(kind, rest, rest)
    name, _, version = rest.rpartition("/") if kind == "version" else (rest, "", "")
    if not name:
        raise InvalidArgumentError(f"Invalid comment target {text!r}: write version:<name>/<version number>")
    model_id = state.registry.model_ids_by_name.get(name)
    if model_id is None:
        raise NotFoundError(f"Registered Model with name={name} not found", details={"name": name})
    if kind == "model":
        return Target(kind, model_id, name)
    if not version.isdigit() or int(version) < 1:
        raise InvalidArgumentError(f"Invalid comment target {text!r}: write version:<name>/<version number>")
    history = state.registry.versions.get(model_id, {}).get(int(version), [])
    if not history or history[-1].is_deleted:
        raise NotFoundError(f"Model Version (name={name}, version={version}) not found", details={"name": name})
    return Target(kind, f"{model_id}/{int(version)}", f"{name}/{int(version)}")


class CommentService:
    """Post, list and delete comments."""

    actor = ActorField()  # the request's user when authentication is on (lakeops/actor.py)

    def __init__(self, store: IcebergStore, *, actor: str, now_ms: Callable[[], int] | None = None) -> None:
        self.store = store
        self.actor = actor
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))

    def post(self, target: str, body: str, *, author: str | None = None) -> Comment:
        """Post a comment on ``target``; ``@name`` in the body mentions a user.

        Raises:
            InvalidArgumentError: a malformed target, an empty or too long body, a bad author.
            NotFoundError: no such run, model or version.
        """
        if not isinstance(body, str) or not body.strip() or len(body) > MAX_BODY_LENGTH:
            raise InvalidArgumentError(f"A comment needs a body of 1 to {MAX_BODY_LENGTH} characters")
        author = author if author is not None else self.actor
        if not isinstance(author, str) or not author.strip() or len(author) > MAX_AUTHOR_LENGTH:
            raise InvalidArgumentError(f"Invalid author {author!r}: 1 to {MAX_AUTHOR_LENGTH} characters")
        comment_id = uuid.uuid4().hex
        now = self._now_ms()
        mentions = mentions_in(body)
        resolved: list[Target] = []

        def build(state: TrackingState) -> Rows:
            found = resolve_target(state, target)
            resolved.append(found)
            return self._row(comment_id, found, author, body, mentions, created_at=now, deleted=False)

        self.store.write(build)
        return Comment(comment_id, str(resolved[0]), author, body, mentions, now)

    def comments_on(self, target: str) -> list[Comment]:
        """The comments on ``target``, oldest first (deleted ones left out).

        Raises:
            InvalidArgumentError: a malformed target.
            NotFoundError: no such run, model or version.
        """
        found = resolve_target(self.store.state, target)
        rows = self.store.scan_with_pending(
            COMMENT_CHANGES.name,
            And(_equal_to("target_kind", found.kind), _equal_to("target_id", found.target_id)),
            lambda t: pc.and_(pc.equal(t["target_kind"], found.kind), pc.equal(t["target_id"], found.target_id)),
        )
        return [replace_target(c, str(found)) for c in _current(rows)]

    def delete(self, target: str, comment_id: str, *, actor: str | None = None) -> None:
        """Delete one comment of ``target`` (a new row marks it deleted; the old row stays in the history).

        Raises:
            NotFoundError: no such target, or no such comment on it.
        """
        comment = next((c for c in self.comments_on(target) if c.comment_id == comment_id), None)
        if comment is None:
            raise NotFoundError(f"No comment '{comment_id}' on {target}", details={"comment_id": comment_id})
        now = self._now_ms()

        def build(state: TrackingState) -> Rows:
            found = resolve_target(state, target)
            return self._row(
                comment_id,
                found,
                comment.author,
                comment.body,
                comment.mentions,
                created_at=comment.created_at,
                deleted=True,
                actor=actor,
                at=now,
            )

        self.store.write(build)

    def _row(
        self,
        comment_id: str,
        target: Target,
        author: str,
        body: str,
        mentions: list[str],
        *,
        created_at: int,
        deleted: bool,
        actor: str | None = None,
        at: int | None = None,
    ) -> Rows:
        columns = {
            "comment_id": [comment_id],
            "target_kind": [target.kind],
            "target_id": [target.target_id],
            "target_name": [target.name],
            "author": [author],
            "body": [body],
            "mentions_json": [json.dumps(mentions)],
            "is_deleted": [deleted],
            "created_at": [created_at * 1000],
            "changed_at": [(at if at is not None else created_at) * 1000],
            "actor": [actor or author],
            "operation": ["delete" if deleted else "create"],
            "writer_id": [self.store.writer_id],
            "wal_seq": [0],
        }
        return {COMMENT_CHANGES.name: pa.RecordBatch.from_pydict(columns, schema=COMMENT_CHANGES.arrow_schema)}


def replace_target(comment: Comment, target: str) -> Comment:
    """The comment with its target written as asked (a renamed model shows its new name)."""
    return Comment(comment.comment_id, target, comment.author, comment.body, comment.mentions, comment.created_at)


def _current(rows: pa.Table) -> list[Comment]:
    """The latest row per comment, oldest comment first, deleted ones left out."""
    if rows.num_rows == 0:
        return []
    rows = rows.sort_by([("changed_at", "ascending"), ("writer_id", "ascending"), ("wal_seq", "ascending")])
    cols = rows.select(["comment_id", "target_kind", "target_name", "author", "body", "mentions_json", "is_deleted"])
    data = cols.to_pydict()
    created = epoch_ints(rows.column("created_at"), "ms")
    latest: dict[str, Comment | None] = {}
    for i, comment_id in enumerate(data["comment_id"]):
        if data["is_deleted"][i]:
            latest[comment_id] = None
            continue
        latest[comment_id] = Comment(
            comment_id,
            f"{data['target_kind'][i]}:{data['target_name'][i]}",
            data["author"][i],
            data["body"][i],
            json.loads(data["mentions_json"][i]),
            created[i] or 0,
        )
    # A stable sort on the time alone: comments posted in the same millisecond keep the order of
    # their first rows (changed_at, writer, log position), which is the order they were posted in.
    return sorted((c for c in latest.values() if c is not None), key=lambda c: c.created_at)
