"""Job ids, paging and result items: unknown, malformed, another tenant's."""

from __future__ import annotations

from .core import UNKNOWN_JOB, Case, got
from .probe import Probe


def job_cases(p: Probe) -> list[Case]:
    """Unknown, malformed and other tenants' job ids; bad paging and item numbers."""
    unknown = f"/v1/jobs/{UNKNOWN_JOB}"
    cases = [
        Case("unknown job id", "GET /v1/jobs/{id}", 404, "job_not_found", lambda: p.get(unknown)),
        Case("unknown job id", "GET /v1/jobs/{id}/result", 404, "job_not_found",
             lambda: p.get(f"{unknown}/result")),
        Case("unknown job id", "DELETE /v1/jobs/{id}", 404, "job_not_found",
             lambda: p.delete(unknown)),
        Case("over-long job id", "GET /v1/jobs/{id}", 404, "job_not_found",
             lambda: p.get("/v1/jobs/" + "j" * 300)),
        Case("SQL in the job id", "GET /v1/jobs/{id}", 404, "job_not_found",
             lambda: p.get("/v1/jobs/x'%20OR%20'1'='1")),
        Case("path traversal in the job id", "GET /v1/jobs/{id}/result", 404, "not_found",
             lambda: p.get("/v1/jobs/..%2F..%2Fhealthz/result")),
        Case("result item out of range", "GET /v1/jobs/{id}/result", 404, "item_not_found",
             lambda: p.get(f"/v1/jobs/{p.setup_job()}/result?item=99")),
        Case("result item not a number", "GET /v1/jobs/{id}/result", 422, "invalid_request",
             lambda: p.get(f"/v1/jobs/{p.setup_job()}/result?item=first")),
        Case("result of a job without one", "GET /v1/jobs/{id}/result", 409, "no_result",
             lambda: p.get(f"/v1/jobs/{p.setup_job()}/result")),
        Case("page size out of range", "GET /v1/jobs", 422, "invalid_request",
             lambda: p.get("/v1/jobs?limit=0")),
        Case("cursor not a number", "GET /v1/jobs", 422, "invalid_request",
             lambda: p.get("/v1/jobs?before=yesterday")),
        Case("wrong method", "PUT /v1/protect", 405, "method_not_allowed",
             lambda: got(p.client.put("/v1/protect", headers=p.h()))),
        Case("path traversal in a static file name", "GET /static/{name}", 404, "not_found",
             lambda: p.get("/static/..%2F..%2Fpyproject.toml", key=None)),
    ]  # fmt: skip
    if p.other_key:

        def other() -> str:
            return f"/v1/jobs/{p.setup_job('other')}"

        cases += [
            Case("another tenant's job", "GET /v1/jobs/{id}", 404, "job_not_found",
                 lambda: p.get(other())),
            Case("another tenant's job", "GET /v1/jobs/{id}/result", 404, "job_not_found",
                 lambda: p.get(f"{other()}/result")),
            Case("another tenant's job", "DELETE /v1/jobs/{id}", 404, "job_not_found",
                 lambda: p.delete(other())),
        ]  # fmt: skip
    return cases
