"""openapi.yaml in the repository is exactly the schema the gateway serves."""

from __future__ import annotations

import yaml

from service.openapi_dump import DEFAULT_PATH, render, schema


def test_openapi_yaml_is_the_served_schema() -> None:
    served = schema()
    on_disk = yaml.safe_load(DEFAULT_PATH.read_text())
    assert on_disk == served, "openapi.yaml is stale: run `python -m service.openapi_dump`"
    assert yaml.safe_load(render(served)) == served


def test_schema_documents_the_contract() -> None:
    spec = schema()
    paths = spec["paths"]
    assert set(paths) >= {
        "/v1/protect",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/result",
        "/v1/verify",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    protect = paths["/v1/protect"]["post"]
    assert "202" in protect["responses"]
    body = protect["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["files"]
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert "ErrorResponse" in spec["components"]["schemas"]
