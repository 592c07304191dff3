"""JSON answers serialised once, straight from the pydantic model a route has built.

A `def` route that returns a model has it validated all over again by FastAPI, in the
threadpool, before it is serialised; a route on the polling path builds its answer from
validated rows and sends it as it is. The route keeps `response_model=` for the OpenAPI schema.
"""

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json
from starlette.responses import Response


def model_json(
    body: BaseModel, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """The model as JSON, with its aliases, as FastAPI would have written it."""
    return Response(
        body.model_dump_json(by_alias=True),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def answer_json(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    """A body already in its model's JSON shape (present.issue_answers), as model_json would
    write the validated model, without validating it again (a non-finite float as null, as
    the model writes it: the words Infinity and NaN are not JSON)."""
    body_json = to_json(body, inf_nan_mode="null")
    return Response(body_json, headers=headers, media_type="application/json")
