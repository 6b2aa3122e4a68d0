"""The OpenAPI 3.1 document covers every API route of the app, with its methods, parameters and errors."""

from __future__ import annotations

import re

from starlette.routing import Route

from tests.portal.kit import portal_client


async def test_every_api_route_and_method_is_documented(db, settings):
    async with portal_client(settings) as client:
        doc = (await client.get("/api/v1/openapi.json")).json()
        app_routes = {
            (method.lower(), route.path)
            for route in client.app.routes  # type: ignore[attr-defined]
            if isinstance(route, Route) and route.path.startswith("/api/v1/") and route.path != "/api/v1/openapi.json"
            for method in (route.methods or set()) - {"HEAD"}
        }
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert app_routes == documented
    assert len(documented) > 50
    assert doc["openapi"] == "3.1.0"
    ids = set()
    for path, ops in doc["paths"].items():
        params = set(re.findall(r"{(\w+)}", path))
        for method, op in ops.items():
            assert op["operationId"] not in ids
            ids.add(op["operationId"])
            assert {p["name"] for p in op["parameters"] if p["in"] == "path"} == params
            assert "404" in op["responses"] and "429" in op["responses"]
            if method in ("post", "put", "patch") and "requestBody" in op:
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                assert schema["additionalProperties"] is False
                assert set(schema["required"]) <= set(schema["properties"])
    assert doc["components"]["schemas"]["Error"]["required"] == ["error", "detail"]
