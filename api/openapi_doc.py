"""The OpenAPI document as the app really answers: FastAPI's generated one, corrected where the
app's own handlers differ from FastAPI's defaults."""

from __future__ import annotations

from typing import Any


def openapi_errors_as_sent(app: Any) -> Any:
    """``app.openapi`` with the 422 body as the app's handler sends it (api/app.py ``_invalid``):
    ``{"detail": "name: problem; ...", "errors": [...]}``, not FastAPI's default list in
    ``detail``. Why: clients and the property tests (tests/api/test_openapi_fuzz.py) read the
    document, and it must not promise a shape the API never sends."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        schemas = schema.get("components", {}).get("schemas", {})
        if "HTTPValidationError" in schemas:
            schemas["HTTPValidationError"] = {
                "title": "HTTPValidationError", "type": "object", "required": ["detail"],
                "properties": {
                    "detail": {"type": "string", "description": "Every problem, each naming its parameter: `name: problem; ...`"},
                    "errors": {"type": "array", "items": {"type": "object"}, "description": "The same problems, one object each"},
                },
            }
        return schema

    return openapi
