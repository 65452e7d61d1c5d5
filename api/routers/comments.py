"""Comments on runs, registered models and model versions under ``/api/v1/comments``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CommentsDep
from api.encoding import JSONBody, RawJSONRoute

router = APIRouter(default_response_class=JSONBody, route_class=RawJSONRoute)

TARGET_HELP = "run:<run_id>, model:<name> or version:<name>/<version>"


class CommentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field(description=TARGET_HELP)
    body: str = Field(description="the text; @name mentions a user")
    author: str | None = Field(default=None, description="who writes (default: the service's actor)")


@router.get("/comments")
def list_comments(comments: CommentsDep, target: str = Query(description=TARGET_HELP)) -> dict[str, Any]:
    """The comments on one target, oldest first."""
    return {"comments": [c.to_dict() for c in comments.comments_on(target)]}


@router.post("/comments", status_code=201)
def post_comment(body: CommentCreate, comments: CommentsDep) -> dict[str, Any]:
    """Post a comment; the answer lists the users it @mentions."""
    return comments.post(body.target, body.body, author=body.author).to_dict()


@router.delete("/comments/{comment_id}", status_code=204)
def delete_comment(comment_id: str, comments: CommentsDep, target: str = Query(description=TARGET_HELP)) -> Response:
    """Delete a comment (it stays in the table's history and in the activity feed)."""
    comments.delete(target, comment_id)
    return Response(status_code=204)
