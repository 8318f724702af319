"""`flamenco jobs list` against a real Server: the newest jobs in a table (100 unless
--limit), a line on stderr saying how many more there are, every job with --all or --json;
a limit below 1 is refused with a sentence."""

from __future__ import annotations

import hashlib
import json

import httpx

from farmkit import TestFarm
from testdata import CORPUS


def submit_jobs(http: httpx.Client, names: list[str]) -> list[str]:
    data = (CORPUS / "basic_file.blend").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert http.put(f"/api/v1/blobs/{sha}", content=data).status_code in (200, 201)
    ids = []
    for name in names:
        job = {
            "name": name,
            "files": {"s.blend": sha},
            "settings": {"blend": "s.blend", "frames": "1", "chunk_size": 1},
        }
        created = http.post("/api/v1/jobs", json=job)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    return ids


def test_the_newest_jobs_are_listed_and_the_rest_counted(srv: TestFarm, http: httpx.Client) -> None:
    ids = submit_jobs(http, ["oldest-shot", "middle-shot", "newest-shot"])

    two = srv.cli("jobs", "list", "--limit", "2")
    assert two.returncode == 0, two.stderr
    assert "newest-shot" in two.stdout and "middle-shot" in two.stdout
    assert "oldest-shot" not in two.stdout and ids[0] not in two.stdout
    assert "The newest 2 of 3 jobs; --all shows every one." in two.stderr

    for every in (srv.cli("jobs", "list"), srv.cli("jobs", "list", "--limit", "2", "--all")):
        assert every.returncode == 0, every.stderr
        assert all(job_id in every.stdout for job_id in ids)
        assert "--all shows" not in every.stderr

    listed = srv.cli("jobs", "list", "--limit", "1", "--json")
    assert [job["id"] for job in json.loads(listed.stdout)] == ids[::-1]  # newest first


def test_a_limit_below_one_is_refused(srv: TestFarm) -> None:
    refused = srv.cli("jobs", "list", "--limit", "0")
    assert refused.returncode != 0
    assert "Invalid value for '--limit'" in refused.stderr
    assert "greater than or equal to 1" in refused.stderr
