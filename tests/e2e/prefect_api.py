"""Reading what flow runs left on the Prefect server: artifacts and logs."""

from __future__ import annotations

import uuid

from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import Artifact
from prefect.logging.handlers import APILogHandler


def artifacts_of(run_id: str) -> list[Artifact]:
    # Prefect 3.8's read_artifacts sends unset filters and paging as null, which its server
    # refuses (422); post the filter as the server expects it.
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/artifacts/filter", json={
            "artifacts": {"flow_run_id": {"any_": [run_id]}}, "sort": "CREATED_DESC", "limit": 200, "offset": 0})
    return Artifact.model_validate_list(response.json())


def api_logs_of(run_id: str) -> list[str]:
    APILogHandler().flush()  # blocks until queued run logs reached the server
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(run_id)])),
                                limit=200, offset=0)
    return [log.message for log in logs]
