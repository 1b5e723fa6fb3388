"""The API's inputs and answers: the rules each parameter is checked against, the response
models the OpenAPI description shows, and the JSON error every failure answers with (it never
repeats the request's input)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path as PathParam, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from streams.validation import ID_PATTERN, ID_RULE

MAX_K = 100

UserId = Annotated[str, PathParam(pattern=f"^{ID_PATTERN}$", description=f"The customer's id: {ID_RULE}.")]
ItemId = Annotated[str, PathParam(pattern=f"^{ID_PATTERN}$", description=f"The product's id: {ID_RULE}.")]
K = Annotated[int, Query(ge=1, le=MAX_K, description=f"How many items to return (1-{MAX_K}).")]
Explain = Annotated[bool, Query(description="Add each item's reason, its evidence and a sentence for the shopper.")]
Exclude = Annotated[str, Query(max_length=1024, description="Item ids to leave out of this answer, comma-separated; "
                                                            "the list's next items take their places.")]


class Recommendations(BaseModel):
    user_id: str
    items: list[str]
    scores: list[float]
    rec_id: str
    model_version: str
    generated_at: float
    event_ts: float | None = None
    fallback: bool = False
    arm: str | None = None  # the experiment arm that wrote the list


class Explanation(BaseModel):
    item_id: str
    title: str
    reason: str
    evidence: str
    evidence_title: str | None = None
    text: str


class ExplainedRecommendations(Recommendations):
    explanations: list[Explanation] = []


class SimilarItems(BaseModel):
    item_id: str
    items: list[str]
    scores: list[float]


class Segment(BaseModel):
    user_id: str
    segment: str


class PopularItems(BaseModel):
    segment: str | None
    items: list[str]
    scores: list[float]
    model_version: str


class Error(BaseModel):
    error: str


class Refusal(BaseModel):
    index: int
    reason: str


class EventsTaken(BaseModel):
    accepted: int
    refused: int
    refusals: list[Refusal]


ERRORS = {404: {"model": Error}, 422: {"model": Error}}


def json_bytes(payload: bytes) -> Response:
    return Response(payload, media_type="application/json")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)
