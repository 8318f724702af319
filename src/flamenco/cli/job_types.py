"""`flamenco job-types`: the job types installed on the Server and their settings, which
`flamenco submit --type NAME --set key=value` takes (README, "Job types")."""

from __future__ import annotations

from pydantic import TypeAdapter

from flamenco import wire
from flamenco.cli.base import JsonOpt, ServerOpt, app, client, friendly_errors
from flamenco.client import SyncApi
from flamenco.core.settings_schema import SettingField, setting_fields

LISTING = TypeAdapter(list[wire.JobTypeInfo])


def fetch_job_types(api: SyncApi) -> list[wire.JobTypeInfo]:
    return LISTING.validate_python(api.request("GET", "/api/v1/job-types").json())


def setting_line(field: SettingField) -> str:
    """One setting for people: name, kind, required or default, what it is."""
    if field.required:
        when = "required"
    elif field.default in (None, [], ""):
        when = "optional"
    else:
        when = f"default {field.default!r}"
    text = f"  {field.name}: {field.summary()}; {when}."
    return f"{text} {field.description}" if field.description else text


@app.command("job-types")
@friendly_errors
def job_types(server: ServerOpt = None, as_json: JsonOpt = False) -> None:
    """List the job types installed on the Server with their settings (submit --type/--set)."""
    listing = fetch_job_types(client(server))
    if as_json:
        print(LISTING.dump_json(listing).decode())
        return
    for index, job_type in enumerate(listing):
        if index:
            print()
        print(f"{job_type.name}: {job_type.label}")
        print(f"  {job_type.description}")
        for field in setting_fields(job_type.settings_schema):
            print(setting_line(field))
