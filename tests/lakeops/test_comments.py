"""Comments on runs, models and versions: an append-only table read on demand, on every backend."""

from __future__ import annotations

import pytest

from lakeops.errors import InvalidArgumentError, NotFoundError
from lakeops.registry import RegistryService
from lakeops.services.comments import CommentService, mentions_in
from lakeops.sql import SqlEngine
from lakeops.stores import IcebergStore, open_store
from lakeops.tracking import TrackingService


def test_mentions_are_found_once_and_emails_are_not_mentions() -> None:
    assert mentions_in("@ana look, and @bo.b too; cc @ana. Mail me at x@example.com (@carl-)") == [
        "ana",
        "bo.b",
        "carl",
    ]
    assert mentions_in("no one here") == []


def test_post_list_delete_and_history_in_sql(store: IcebergStore, tracking: TrackingService) -> None:
    exp = tracking.create_experiment("c")
    run_id = tracking.create_run(exp, run_name="r").info.run_id
    comments = CommentService(store, actor="svc")
    first = comments.post(f"run:{run_id}", "diverged after step 300 @bo", author="ana")
    second = comments.post(f"run:{run_id}", "lr too high?")
    assert first.mentions == ["bo"] and second.author == "svc"
    store.commit()  # the first two from the lake, the third still queued: both are read
    comments.post(f"run:{run_id}", "@ana agreed, @carl", author="bo")
    listed = comments.comments_on(f"run:{run_id}")
    assert [c.body for c in listed] == ["diverged after step 300 @bo", "lr too high?", "@ana agreed, @carl"]
    assert listed[2].mentions == ["ana", "carl"] and listed[0].target == f"run:{run_id}"

    comments.delete(f"run:{run_id}", second.comment_id, actor="ana")
    assert [c.author for c in comments.comments_on(f"run:{run_id}")] == ["ana", "bo"]
    with pytest.raises(NotFoundError, match="No comment"):
        comments.delete(f"run:{run_id}", second.comment_id)

    engine = SqlEngine(store.settings, store=store)
    try:
        current = engine.query("SELECT author, mentions FROM comments ORDER BY created_at").to_pylist()
        assert current == [{"author": "ana", "mentions": ["bo"]}, {"author": "bo", "mentions": ["ana", "carl"]}]
        feed = engine.query(
            "SELECT actor, operation, run_id FROM activity WHERE entity_type = 'comment' ORDER BY changed_at"
        ).to_pylist()
        assert [(r["actor"], r["operation"]) for r in feed] == [
            ("ana", "create"),
            ("svc", "create"),
            ("bo", "create"),
            ("ana", "delete"),
        ]
        assert {r["run_id"] for r in feed} == {run_id}
    finally:
        engine.close()

    store.close()
    reopened = open_store(store.settings)  # after a restart: from the lake alone
    try:
        assert len(CommentService(reopened, actor="svc").comments_on(f"run:{run_id}")) == 2
    finally:
        reopened.close()


def test_models_and_versions_keep_their_comments_through_a_rename(store: IcebergStore) -> None:
    registry = RegistryService(store, actor="ana")
    registry.create_registered_model("churn")
    registry.create_model_version("churn", "s3://bucket/model")
    comments = CommentService(store, actor="svc")
    comments.post("model:churn", "owner: @ana")
    comments.post("version:churn/1", "ready for review")
    registry.rename_registered_model("churn", "churn-gbm")
    assert [c.body for c in comments.comments_on("model:churn-gbm")] == ["owner: @ana"]
    assert [c.target for c in comments.comments_on("version:churn-gbm/1")] == ["version:churn-gbm/1"]
    with pytest.raises(NotFoundError, match="churn not found"):
        comments.comments_on("model:churn")


@pytest.mark.parametrize(
    ("target", "body", "error", "match"),
    [
        pytest.param("run", "x", InvalidArgumentError, "Invalid comment target", id="no-kind"),
        pytest.param("experiment:1", "x", InvalidArgumentError, "must be one of run, model, version", id="bad-kind"),
        pytest.param("run:nope", "x", NotFoundError, "Run 'nope' not found", id="unknown-run"),
        pytest.param("model:nope", "x", NotFoundError, "nope not found", id="unknown-model"),
        pytest.param("version:nope", "x", InvalidArgumentError, "version:<name>/<version number>", id="no-version"),
        pytest.param("run:{run}", "   ", InvalidArgumentError, "needs a body", id="empty-body"),
        pytest.param("run:{run}", "x" * 10_001, InvalidArgumentError, "needs a body", id="long-body"),
    ],
)
def test_bad_comments_are_refused_and_store_nothing(
    store: IcebergStore, tracking: TrackingService, target: str, body: str, error: type[Exception], match: str
) -> None:
    run_id = tracking.create_run(tracking.create_experiment("e")).info.run_id
    comments = CommentService(store, actor="svc")
    with pytest.raises(error, match=match):
        comments.post(target.format(run=run_id), body)
    assert comments.comments_on(f"run:{run_id}") == []
