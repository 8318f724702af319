"""The Server's list of installed job types (`flamenco.job_types` entry points): what
`flamenco job-types` prints and what the add-on builds its panel from."""

from __future__ import annotations

from fastapi import FastAPI

from flamenco import wire
from flamenco.job_type_registry import job_type_listing
from flamenco.server.deps import AnyUser


def install_job_type_routes(app: FastAPI) -> None:
    @app.get("/api/v1/job-types")
    def list_job_types(_: AnyUser) -> list[wire.JobTypeInfo]:
        """The job types installed on the Server, each with its settings' JSON schema."""
        return job_type_listing()
