"""Bad input gets a clear error and loses nothing.

The HTTP status says which kind of error, the body's `detail` says why in one sentence, the CLI
prints that sentence on stderr and exits non-zero, and nothing half-written stays behind: no
job, no blob, no temporary file under the Server's blobs/tmp folder.

One real Server process serves the whole module; every test checks what it left behind.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import re
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from farmkit import TestFarm, wait_until
from flamenco.server.auth import NO_TOKEN, WRONG_TOKEN
from testdata import CORPUS

MAX_UPLOAD = 2_000_000
JSON_LIMIT = 16 * 1024 * 1024

TEXT = b"This is a plain text file, not a Blender scene.\n"
BLEND = "scene.blend"

blender = pytest.mark.blender  # for the tests that need the demo scene built by real Blender


# ---- one Server for the module ---------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestFarm]:
    """A Server alone, with a small upload limit so that oversized blobs are cheap to send."""
    with TestFarm(tmp_path_factory.mktemp("bad-input") / "farm") as farm:
        farm.start_server(env={"FLAMENCO_SERVER_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)})
        yield farm


@pytest.fixture(scope="module")
def scene_sha(http: httpx.Client, demo_scene: Path) -> str:
    return upload(http, demo_scene.read_bytes())


@pytest.fixture(scope="module")
def text_sha(http: httpx.Client) -> str:
    return upload(http, TEXT)


# ---- helpers ---------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(http: httpx.Client, data: bytes) -> str:
    digest = sha256(data)
    response = http.put(f"/api/v1/blobs/{digest}", content=data)
    assert response.status_code == 201, response.text
    return digest


def missing(http: httpx.Client, *hashes: str) -> list[str]:
    response = http.post("/api/v1/blobs/missing", json={"hashes": list(hashes)})
    assert response.status_code == 200, response.text
    return response.json()["missing"]


def job_ids(http: httpx.Client) -> list[str]:
    response = http.get("/api/v1/jobs")
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()]


def temp_files(farm: TestFarm) -> list[str]:
    return sorted(p.name for p in (farm.root / "server" / "blobs" / "tmp").iterdir())


def submission(scene: str, **settings: Any) -> dict[str, Any]:
    """A valid job submission; each test spoils exactly one part of it."""
    return {
        "name": "bad-input",
        "files": {BLEND: scene},
        "settings": {"blend": BLEND, "frames": "1-3", **settings},
    }


def one_sentence(text: str) -> str:
    """The same sentence whatever the terminal wrapped; for comparing CLI output."""
    return " ".join(text.split())


def assert_refused(response: httpx.Response, status: int, *mentions: str) -> str:
    """The response is an error of `status` whose detail is one sentence naming `mentions`."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    body = response.json()
    assert set(body) == {"detail"}, body
    detail = body["detail"]
    assert isinstance(detail, str) and detail.strip() == detail and detail, body
    assert detail.endswith("."), f"not a sentence: {detail!r}"
    assert "\n" not in detail, f"more than one line: {detail!r}"
    assert not re.search(r"[.!?]\s+[A-Z]", detail), f"more than one sentence: {detail!r}"
    for mention in mentions:
        assert mention in detail, f"{mention!r} not in {detail!r}"
    return detail


@contextlib.contextmanager
def leaves_nothing(farm: TestFarm, http: httpx.Client) -> Iterator[None]:
    """The block may be refused, but no job and no temporary upload file may stay behind."""
    before = job_ids(http)
    assert temp_files(farm) == [], "blobs/tmp was not empty before the test"
    yield
    assert job_ids(http) == before, "a refused request left a job behind"
    assert temp_files(farm) == [], "a refused request left a temporary file in blobs/tmp"


# ---- 1. frame ranges -------------------------------------------------------------------------


@blender
@pytest.mark.parametrize(
    ("frames", "why"),
    [
        ("1-x", "'x' is not a whole number"),
        ("10-1", "runs backwards"),
        ("", "is empty"),
        ("1,,2", "item 2 is empty"),
    ],
    ids=["letter", "backwards", "empty", "empty-item"],
)
def test_an_invalid_frame_range_is_refused_with_the_range_named(
    srv: TestFarm, http: httpx.Client, scene_sha: str, frames: str, why: str
) -> None:
    with leaves_nothing(srv, http):
        response = http.post("/api/v1/jobs", json=submission(scene_sha, frames=frames))
        assert_refused(response, 422, f"Frame range {frames!r}", why)


@blender
def test_the_otherwise_valid_submission_is_accepted(
    srv: TestFarm, http: httpx.Client, scene_sha: str
) -> None:
    """The control for every refusal here: only the one spoilt part is to blame."""
    before = job_ids(http)
    response = http.post("/api/v1/jobs", json=submission(scene_sha))
    assert response.status_code == 201, response.text
    job = response.json()
    after = job_ids(http)
    assert len(after) == len(before) + 1 and set(after) == {job["id"], *before}
    assert (job["tasks_total"], job["frames_total"]) == (3, 3)
    # An existing job without rendered frames is a 404 as well, with its own sentence.
    assert_refused(http.get(f"/api/v1/jobs/{job['id']}/frames/2"), 404, "no rendered frame 2")


# ---- 2. unknown jobs and blobs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix",
    ["", "/tasks", "/tasks/page", "/runs", "/history", "/frames", "/frames/page", "/frames/1"],
)
def test_an_unknown_job_is_a_404(srv: TestFarm, http: httpx.Client, suffix: str) -> None:
    with leaves_nothing(srv, http):
        response = http.get(f"/api/v1/jobs/nope{suffix}")
        assert_refused(response, 404, "There is no job with id 'nope'.")


@pytest.fixture(scope="module")
def corpus_job(http: httpx.Client) -> str:
    """A job of 3 tasks on a .blend of the corpus: no Blender needed to submit it."""
    scene = upload(http, (CORPUS / "basic_file.blend").read_bytes())
    created = http.post("/api/v1/jobs", json=submission(scene))
    assert created.status_code == 201, created.text
    return created.json()["id"]


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("offset=-1", "The offset must be 0 or more, not -1."),
        ("limit=-5", "The limit must be from 0 to 1000, not -5."),
        ("limit=1001", "The limit must be from 0 to 1000, not 1001."),
        ("status=done", "'done' is not a task status; the statuses are: queued,"),
        (f"search={'x' * 201}", "The text to look for must be at most 200 characters."),
        ("offset=first", "field 'offset'"),
        ("limit=1e9", "field 'limit'"),
    ],
    ids=[
        "negative-offset",
        "negative-limit",
        "limit-too-big",
        "unknown-status",
        "long-search",
        "offset-not-a-number",
        "limit-not-an-integer",
    ],
)
def test_a_page_of_tasks_that_cannot_be_given_is_a_422(
    http: httpx.Client, corpus_job: str, query: str, why: str
) -> None:
    assert_refused(http.get(f"/api/v1/jobs/{corpus_job}/tasks/page?{query}"), 422, why)


def test_the_otherwise_valid_page_of_tasks_is_given(http: httpx.Client, corpus_job: str) -> None:
    """The control for the refusals above."""
    response = http.get(f"/api/v1/jobs/{corpus_job}/tasks/page?offset=1&limit=1&status=queued")
    assert response.status_code == 200, response.text
    page = response.json()
    assert (page["total"], page["matching"], page["counts"]) == (3, 3, {"queued": 3})
    assert [t["name"] for t in page["tasks"]] == ["render 2"]
    assert (page["runs"], page["started"]) == ([], None)
    assert http.get(f"/api/v1/jobs/{corpus_job}/runs").json() == {"started": None, "runs": []}


def test_an_unknown_blob_is_a_404(http: httpx.Client) -> None:
    never = sha256(b"never uploaded")
    assert_refused(http.get(f"/api/v1/blobs/{never}"), 404, never)


# ---- 3. authentication -----------------------------------------------------------------------

NO_TOKEN_KINDS = {"none", "no-scheme", "basic-scheme", "scheme-only", "token-scheme"}


def _auth_headers(srv: TestFarm, kind: str) -> dict[str, str]:
    assert srv.secrets is not None
    return {
        "none": {},
        "wrong": {"Authorization": "Bearer flu_this-token-was-never-issued"},
        "manager-token": {"Authorization": f"Bearer {srv.secrets.manager_token}"},
        "no-scheme": {"Authorization": srv.token},
        "basic-scheme": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "scheme-only": {"Authorization": "Bearer"},
        "token-scheme": {"Authorization": f"Token {srv.token}"},
    }[kind]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "kind",
    ["none", "wrong", "manager-token", "no-scheme", "basic-scheme", "scheme-only", "token-scheme"],
)
def test_a_missing_wrong_or_malformed_token_is_a_401(
    srv: TestFarm, http: httpx.Client, method: str, kind: str
) -> None:
    body = submission(sha256(b"")) if method == "POST" else None
    with leaves_nothing(srv, http):
        response = httpx.request(
            method, f"{srv.server_url}/api/v1/jobs", json=body, headers=_auth_headers(srv, kind)
        )
        detail = assert_refused(response, 401)
        assert detail == (NO_TOKEN if kind in NO_TOKEN_KINDS else WRONG_TOKEN)


def test_an_upload_without_a_token_is_a_401_and_stores_nothing(
    srv: TestFarm, http: httpx.Client
) -> None:
    data = b"uploaded without a token"
    with leaves_nothing(srv, http):
        response = httpx.put(f"{srv.server_url}/api/v1/blobs/{sha256(data)}", content=data)
        assert_refused(response, 401, "token")
    assert missing(http, sha256(data)) == [sha256(data)]


# ---- 4. corrupt, cut-off and misaddressed uploads --------------------------------------------


def test_bytes_that_do_not_match_their_hash_are_refused_and_not_stored(
    srv: TestFarm, http: httpx.Client
) -> None:
    announced, sent = b"the bytes that were announced", b"other bytes arrived instead"
    with leaves_nothing(srv, http):
        response = http.put(f"/api/v1/blobs/{sha256(announced)}", content=sent)
        assert_refused(response, 400, "hash", sha256(announced))
    assert missing(http, sha256(announced), sha256(sent)) == sorted(
        [sha256(announced), sha256(sent)]
    )


def test_wrong_bytes_for_a_stored_blob_leave_the_stored_blob_intact(
    srv: TestFarm, http: httpx.Client
) -> None:
    good = b"a blob that is already on the Server"
    digest = upload(http, good)
    with leaves_nothing(srv, http):
        response = http.put(f"/api/v1/blobs/{digest}", content=b"an impostor")
        assert_refused(response, 400, "hash")
    stored = http.get(f"/api/v1/blobs/{digest}")
    assert stored.status_code == 200 and stored.content == good


@pytest.mark.parametrize(
    "name", ["not-a-hash", "A" * 64, "0" * 63], ids=["word", "upper-case", "too-short"]
)
def test_a_blob_address_that_is_not_a_sha256_is_a_422(
    srv: TestFarm, http: httpx.Client, name: str
) -> None:
    with leaves_nothing(srv, http):
        assert_refused(http.put(f"/api/v1/blobs/{name}", content=b"x"), 422, "sha256")


def test_an_upload_cut_off_halfway_leaves_no_temporary_file(
    srv: TestFarm, http: httpx.Client
) -> None:
    data = b"z" * 100_000
    digest = sha256(data)
    address = urlsplit(srv.server_url)
    head = (
        f"PUT /api/v1/blobs/{digest} HTTP/1.1\r\n"
        f"Host: {address.netloc}\r\n"
        f"Authorization: Bearer {srv.token}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    assert temp_files(srv) == []
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head + data[: len(data) // 2])
        wait_until(lambda: temp_files(srv), 10, "the upload to reach blobs/tmp")
    wait_until(lambda: temp_files(srv) == [], 10, "the cut-off upload's temp file to go")
    assert missing(http, digest) == [digest]


# ---- 5. paths that try to escape the job's folder --------------------------------------------


@blender
@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../evil.blend", "'../evil.blend' tries to leave its folder"),
        ("/etc/x.blend", "'/etc/x.blend' tries to leave its folder"),
        ("sub/../../evil.blend", "'sub/../../evil.blend' tries to leave its folder"),
        ("C:evil.blend", "'C:evil.blend' tries to leave its folder"),
        ("sub\\evil.blend", "'sub\\evil.blend' is not a valid relative path"),
        ("tex/" + "a" * 300 + ".png", "has a part longer than 255 bytes (304 in UTF-8)"),
        ("tex/evil\nname.png", "'tex/evil\\nname.png' contains a control character"),
        ("tex//wood.png", "'tex//wood.png' has an empty or '.' part"),
    ],
    ids=[
        "dot-dot",
        "absolute",
        "nested-dot-dot",
        "drive",
        "backslash",
        "300-bytes",
        "newline",
        "empty-part",
    ],
)
def test_a_file_path_that_is_not_a_safe_relative_path_is_a_422(
    srv: TestFarm, http: httpx.Client, scene_sha: str, path: str, why: str
) -> None:
    """The manifest's paths become files in every Worker's job folder: each is checked on
    arrival, with the reason, and nothing is kept."""
    body = submission(scene_sha)
    body["files"][path] = scene_sha
    with leaves_nothing(srv, http):
        assert_refused(http.post("/api/v1/jobs", json=body), 422, "field 'files'", why)


# ---- 6. scenes that are not .blend files ----------------------------------------------------


def _corpus_file(name: str) -> bytes:
    path = CORPUS / name
    if not path.is_file():
        pytest.fail(f"The blend corpus file {path} is missing; these tests need it.")
    return path.read_bytes()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (lambda: TEXT, "is not a .blend file"),
        (lambda: b"", "is not a .blend file"),
        (lambda: _corpus_file("corrupt_only_magic.blend"), "without any data blocks"),
        (lambda: b"\x1f\x8b" + b"not really gzip" * 4, "cannot be read"),
        (lambda: b"\x28\xb5\x2f\xfd" + b"not really zstd" * 4, "cannot be read"),
        (lambda: gzip.compress(b"just text, gzipped\n" * 8), "is not a .blend file"),
    ],
    ids=["text", "empty", "only-magic", "bad-gzip", "bad-zstd", "gzipped-text"],
)
def test_a_scene_that_is_not_a_blend_file_is_a_415(
    srv: TestFarm, http: httpx.Client, content: Any, why: str
) -> None:
    sha = upload(http, content())
    with leaves_nothing(srv, http):
        response = http.post("/api/v1/jobs", json=submission(sha))
        assert_refused(response, 415, f"'{BLEND}'", why)


def test_the_only_magic_corpus_file_is_the_36_byte_one() -> None:
    data = _corpus_file("corrupt_only_magic.blend")
    assert len(data) == 36 and data.startswith(b"BLENDER")


def test_a_blend_setting_that_does_not_name_a_blend_file_is_a_422(
    srv: TestFarm, http: httpx.Client, text_sha: str
) -> None:
    body = submission(text_sha, blend="scene.txt")
    body["files"] = {"scene.txt": text_sha}
    with leaves_nothing(srv, http):
        response = http.post("/api/v1/jobs", json=body)
        assert_refused(response, 422, "'scene.txt'", ".blend")


@blender
def test_a_blend_setting_that_is_not_among_the_files_is_a_422(
    srv: TestFarm, http: httpx.Client, scene_sha: str
) -> None:
    with leaves_nothing(srv, http):
        response = http.post("/api/v1/jobs", json=submission(scene_sha, blend="other.blend"))
        assert_refused(response, 422, "'other.blend'")


# ---- 7. oversized bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_a_blob_over_the_upload_limit_is_a_413_and_not_stored(
    srv: TestFarm, http: httpx.Client, streamed: bool
) -> None:
    data = bytes(range(256)) * (MAX_UPLOAD // 256) + b"\0" * (MAX_UPLOAD % 256 + 1)
    assert len(data) == MAX_UPLOAD + 1
    digest = sha256(data)

    def pieces() -> Iterator[bytes]:  # no Content-Length: the Server must count as it reads
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]

    with leaves_nothing(srv, http):
        response = http.put(f"/api/v1/blobs/{digest}", content=pieces() if streamed else data)
        assert_refused(response, 413, str(MAX_UPLOAD))
    assert missing(http, digest) == [digest]


def test_a_blob_of_exactly_the_upload_limit_is_stored(http: httpx.Client) -> None:
    data = b"\1" * MAX_UPLOAD
    digest = upload(http, data)
    assert http.get(f"/api/v1/blobs/{digest}").content == data


@pytest.mark.parametrize("where", ["name", "settings"])
def test_a_json_body_over_16_mib_is_a_413(srv: TestFarm, http: httpx.Client, where: str) -> None:
    body = submission(sha256(b""))
    filler = "n" * (JSON_LIMIT + 1)
    if where == "name":
        body["name"] = filler
    else:
        body["settings"]["padding"] = filler
    with leaves_nothing(srv, http):
        assert_refused(http.post("/api/v1/jobs", json=body), 413, str(JSON_LIMIT))


# ---- 8.-10. malformed submissions ------------------------------------------------------------


def _spoil(body: dict[str, Any], case: str) -> dict[str, Any] | bytes:
    if case == "not-json":
        return b'{"name": "half a document", "files": {'
    if case == "not-an-object":
        return b'["a", "list"]'
    if case == "no-files":
        del body["files"]
    elif case == "no-settings":
        del body["settings"]
    elif case == "priority-500":
        body["priority"] = 500
    elif case == "unknown-key":
        body["colour"] = "red"
    elif case == "empty-name":
        body["name"] = "   "
    elif case == "hash-not-hex":
        body["files"][BLEND] = "not-a-hash"
    elif case == "settings-not-object":
        body["settings"] = "1-10"
    elif case == "name-201-bytes":
        body["name"] = "é" * 100 + "!"  # 101 characters, 201 bytes in UTF-8
    elif case == "name-newline":
        body["name"] = "two\nlines"
    elif case == "pattern-201-bytes":
        body["settings"]["output_pattern"] = "#" * 201
    elif case == "nan-setting":  # JSON has no NaN; Python's json module writes it anyway
        body["settings"]["fps"] = float("nan")
        return json.dumps(body).encode()
    return body


MALFORMED = [
    ("not-json", "not valid JSON"),
    ("not-an-object", "request body"),
    ("no-files", "'files'"),
    ("no-settings", "'settings'"),
    ("priority-500", "'priority'"),
    ("unknown-key", "'colour'"),
    ("empty-name", "'name'"),
    ("hash-not-hex", "'files.scene.blend'"),
    ("settings-not-object", "'settings'"),
    ("name-201-bytes", "field 'name': The name 'éééé"),
    ("name-newline", "'two\\nlines' contains a control character"),
    ("pattern-201-bytes", "'output_pattern' must be a plain file name of at most 200 bytes"),
    ("nan-setting", "field 'settings': Input should be a finite number"),
]


@pytest.mark.parametrize(("case", "mention"), MALFORMED, ids=[case for case, _ in MALFORMED])
def test_a_malformed_job_document_is_a_422(
    srv: TestFarm, http: httpx.Client, case: str, mention: str
) -> None:
    spoilt = _spoil(submission(sha256(b"")), case)
    with leaves_nothing(srv, http):
        if isinstance(spoilt, bytes):
            response = http.post(
                "/api/v1/jobs", content=spoilt, headers={"Content-Type": "application/json"}
            )
        else:
            response = http.post("/api/v1/jobs", json=spoilt)
        assert_refused(response, 422, mention)


@blender
def test_a_manifest_naming_a_blob_never_uploaded_is_a_422(
    srv: TestFarm, http: httpx.Client, scene_sha: str
) -> None:
    body = submission(scene_sha)
    body["files"]["textures/wood.png"] = sha256(b"a texture nobody uploaded")
    with leaves_nothing(srv, http):
        response = http.post("/api/v1/jobs", json=body)
        assert_refused(response, 422, "never uploaded", "'textures/wood.png'")


def test_a_scene_never_uploaded_is_a_422(srv: TestFarm, http: httpx.Client) -> None:
    with leaves_nothing(srv, http):
        response = http.post("/api/v1/jobs", json=submission(sha256(b"never sent")))
        assert_refused(response, 422, "never uploaded", f"'{BLEND}'")


@blender
@pytest.mark.parametrize(
    ("job_type", "settings", "mention"),
    [
        ("fax-render", {}, "Unknown job type 'fax-render'"),
        ("blender-render", {"chunksize": 2}, "'chunksize'"),
        ("blender-render", {"chunk_size": 0}, "'chunk_size'"),
        ("blender-render", {"output_format": "GIF"}, "'GIF'"),
    ],
    ids=["unknown-type", "unknown-setting", "chunk-size-0", "unknown-format"],
)
def test_an_unknown_job_type_or_bad_setting_is_a_422(
    srv: TestFarm,
    http: httpx.Client,
    scene_sha: str,
    job_type: str,
    settings: dict[str, Any],
    mention: str,
) -> None:
    body = submission(scene_sha, **settings) | {"type": job_type}
    with leaves_nothing(srv, http):
        assert_refused(http.post("/api/v1/jobs", json=body), 422, mention)


# ---- the CLI ---------------------------------------------------------------------------------


def assert_cli_says(result: Any, sentence: str) -> None:
    """The CLI failed, printed `sentence` on stderr, nothing on stdout, and no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert sentence.endswith("."), sentence
    assert one_sentence(sentence) in one_sentence(result.stderr), result.stderr
    assert result.stdout == "", result.stdout


def _submission_sentence(
    http: httpx.Client, path: Path, frames: str, status: int | None = None
) -> str:
    """What the Server says to the submission `flamenco submit PATH --frames FRAMES` makes
    (with `status`, the status it must say it with)."""
    digest = upload(http, path.read_bytes())
    body = {
        "name": path.stem,
        "files": {path.name: digest},
        "settings": {"blend": path.name, "frames": frames, "chunk_size": 1},
    }
    response = http.post("/api/v1/jobs", json=body)
    assert response.status_code >= 400, response.text
    assert status is None or response.status_code == status, response.text
    return response.json()["detail"]


@pytest.mark.parametrize(
    ("filename", "status"), [("notes.txt", 422), ("fake.blend", 415)], ids=["txt", "text-as-blend"]
)
def test_cli_submit_of_a_file_that_is_not_a_blend_prints_the_servers_sentence(
    srv: TestFarm, http: httpx.Client, tmp_path: Path, filename: str, status: int
) -> None:
    """Said before the file is uploaded (one given by mistake may be gigabytes)."""
    path = tmp_path / filename
    path.write_bytes(TEXT)
    with leaves_nothing(srv, http):
        sentence = _submission_sentence(http, path, "1-3", status)
        result = srv.cli("submit", str(path), "--frames", "1-3")
    assert f"'{filename}'" in sentence
    assert_cli_says(result, sentence)
    assert "Files:" not in result.stderr, "the refused file was uploaded"


@blender
@pytest.mark.parametrize(
    "frames",
    ["1-x", "[bold]1-x", "[/x]", ":thumbs_up:"],
    ids=["letter", "markup-open", "markup-close", "emoji-code"],
)
def test_cli_submit_with_a_bad_frame_range_prints_the_servers_sentence_verbatim(
    srv: TestFarm, http: httpx.Client, demo_scene: Path, frames: str
) -> None:
    with leaves_nothing(srv, http):
        sentence = _submission_sentence(http, demo_scene, frames)
        result = srv.cli("submit", str(demo_scene), "--frames", frames)
    assert f"Frame range {frames!r}" in sentence
    assert_cli_says(result, sentence)


def test_cli_jobs_show_of_an_unknown_job_prints_the_404_sentence(
    srv: TestFarm, http: httpx.Client
) -> None:
    sentence = assert_refused(http.get("/api/v1/jobs/nope"), 404)
    assert_cli_says(srv.cli("jobs", "show", "nope"), sentence)


@pytest.mark.parametrize("command", ["jobs-list", "jobs-show", "submit"])
def test_cli_with_a_wrong_token_prints_the_401_sentence(
    srv: TestFarm, http: httpx.Client, tmp_path: Path, command: str
) -> None:
    # A real .blend (what the CLI judges itself passes), with bytes after its end that make
    # it this test's own: no other test uploads the same blob.
    scene = tmp_path / "scene.blend"
    scene.write_bytes((CORPUS / "basic_file.blend").read_bytes() + tmp_path.name.encode())
    args = {
        "jobs-list": ["jobs", "list"],
        "jobs-show": ["jobs", "show", "nope"],
        "submit": ["submit", str(scene), "--frames", "1"],
    }[command]
    with leaves_nothing(srv, http):
        result = srv.cli(*args, env={"FLAMENCO_TOKEN": "wrong"})
    assert_cli_says(result, WRONG_TOKEN)
    assert missing(http, sha256(scene.read_bytes())) == [sha256(scene.read_bytes())]


@pytest.mark.parametrize("name", ["missing.blend", "[/x].blend"], ids=["plain", "markup"])
def test_cli_submit_of_a_path_that_does_not_exist_says_so(
    srv: TestFarm, http: httpx.Client, tmp_path: Path, name: str
) -> None:
    path = tmp_path / "nowhere" / name
    with leaves_nothing(srv, http):
        result = srv.cli("submit", str(path), "--frames", "1")
        # Said first: without --frames too, whose absence would be the next thing to fix.
        without_frames = srv.cli("submit", str(path))
    assert_cli_says(result, f"The scene '{path}' does not exist.")
    assert_cli_says(without_frames, f"The scene '{path}' does not exist.")


@blender
def test_cli_submit_with_a_job_name_over_200_bytes_says_so_before_uploading(
    srv: TestFarm, http: httpx.Client, demo_scene: Path
) -> None:
    name = "é" * 101  # 202 bytes in UTF-8
    blobs_before = sorted((srv.root / "server" / "blobs").rglob("*"))
    with leaves_nothing(srv, http):
        result = srv.cli("submit", str(demo_scene), "--frames", "1", "--name", name)
    assert_cli_says(
        result, "The job name '" + "é" * 60 + "…' is longer than 200 bytes (202 in UTF-8)."
    )
    assert sorted((srv.root / "server" / "blobs").rglob("*")) == blobs_before


# ---- 8. artifacts: other outputs of a job (its preview video, a script's files in folders) ----


@pytest.fixture(scope="module")
def leased(srv: TestFarm, http: httpx.Client, scene_sha: str) -> tuple[str, str]:
    """A job of its own, and one of its tasks leased to the farm's Manager: (job, task)."""
    body = {**submission(scene_sha), "priority": 100}  # ahead of the other tests' jobs
    created = http.post("/api/v1/jobs", json=body)
    assert created.status_code == 201, created.text
    worker = {"name": "w", "status": "awake", "blender_version": "99.0"}
    synced = httpx.post(
        f"{srv.server_url}/api/v1/manager/sync",
        json={"want": 1, "workers": [worker]},
        headers=_manager_auth(srv),
    )
    assert synced.status_code == 200, synced.text
    (lease,) = synced.json()["leases"]
    assert lease["job_id"] == created.json()["id"]
    return lease["job_id"], lease["task_id"]


def _manager_auth(srv: TestFarm) -> dict[str, str]:
    assert srv.secrets is not None
    return {"Authorization": f"Bearer {srv.secrets.manager_token}"}


def _put_artifact(srv: TestFarm, task_id: str, name: str, data: bytes) -> httpx.Response:
    return httpx.put(
        f"{srv.server_url}/api/v1/manager/tasks/{task_id}/artifacts/{name}",
        content=data,
        headers={**_manager_auth(srv), "X-Flamenco-SHA256": sha256(data)},
    )


@blender
@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("..%2Fevil.mp4", "tries to leave its folder"),
        ("..%2F..%2F..%2Fevil.mp4", "tries to leave its folder"),
        ("%2Fetc%2Fevil.mp4", "tries to leave its folder"),
        ("sub%2F%2Fpreview.mp4", "has an empty or '.' part"),
        ("%2E%2E", "tries to leave its folder"),
        ("%2Ehidden.mp4", "is not a plain file name"),
        ("%2Ehidden%2Fpreview.mp4", "is not a plain file name"),
    ],
    ids=["dot-dot", "deep-dot-dot", "absolute", "empty-part", "only-dots", "hidden", "hidden-dir"],
)
def test_an_artifact_name_that_tries_to_leave_its_folder_is_a_400(
    srv: TestFarm, http: httpx.Client, leased: tuple[str, str], name: str, why: str
) -> None:
    job_id, task_id = leased
    data = f"an artifact called {name}".encode()
    with leaves_nothing(srv, http):
        assert_refused(_put_artifact(srv, task_id, name, data), 400, why)
    assert missing(http, sha256(data)) == [sha256(data)]
    listed = http.get(f"/api/v1/jobs/{job_id}/artifacts").json()
    assert all(a["sha256"] != sha256(data) for a in listed), listed
    assert not list(srv.root.rglob("evil.mp4")) and not list(srv.root.rglob(".hidden.mp4"))


@blender
def test_an_artifact_with_a_plain_name_is_stored_listed_and_served(
    srv: TestFarm, http: httpx.Client, leased: tuple[str, str]
) -> None:
    """The control for the refusals above: the same route takes a plain name."""
    job_id, task_id = leased
    data = b"a preview video, as far as this test cares"
    response = _put_artifact(srv, task_id, "preview.mp4", data)
    assert response.status_code == 201, response.text
    (listed,) = http.get(f"/api/v1/jobs/{job_id}/artifacts").json()
    assert (listed["name"], listed["sha256"], listed["size"]) == (
        "preview.mp4",
        sha256(data),
        len(data),
    )
    assert http.get(f"/api/v1/jobs/{job_id}/artifacts/preview.mp4").content == data
    job = http.get(f"/api/v1/jobs/{job_id}").json()
    assert (Path(job["output_dir"]) / "preview.mp4").read_bytes() == data


@blender
@pytest.mark.parametrize("route", ["frames/1?filename=f.png", "artifacts/preview.mp4"])
def test_a_frame_or_artifact_whose_hash_header_is_not_a_hash_is_a_400(
    srv: TestFarm, http: httpx.Client, leased: tuple[str, str], route: str
) -> None:
    _, task_id = leased
    with leaves_nothing(srv, http):
        response = httpx.put(
            f"{srv.server_url}/api/v1/manager/tasks/{task_id}/{route}",
            content=b"some bytes",
            headers={**_manager_auth(srv), "X-Flamenco-SHA256": "not-a-hash"},
        )
        assert_refused(response, 400, "X-Flamenco-SHA256 header is not a SHA-256 hex digest")


@blender
def test_a_job_without_thumbnails_or_artifacts_says_so(
    srv: TestFarm, http: httpx.Client, scene_sha: str
) -> None:
    created = http.post("/api/v1/jobs", json=submission(scene_sha))
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert_refused(http.get(f"/api/v1/jobs/{job_id}/frames/2/thumbnail"), 404, "no thumbnail")
    assert http.get(f"/api/v1/jobs/{job_id}/artifacts").json() == []
    assert_refused(http.get(f"/api/v1/jobs/{job_id}/artifacts/preview.mp4"), 404, "preview.mp4")


@pytest.mark.parametrize("suffix", ["/artifacts", "/artifacts/preview.mp4", "/frames/1/thumbnail"])
def test_an_unknown_job_has_no_artifacts_or_thumbnails(
    srv: TestFarm, http: httpx.Client, suffix: str
) -> None:
    assert_refused(http.get(f"/api/v1/jobs/nope{suffix}"), 404, "There is no job with id 'nope'.")


# ---- 11. body limits fit the route -----------------------------------------------------------


def _raw_request(
    srv: TestFarm, head: str, body: Iterator[bytes] = iter(())
) -> tuple[int, str, int]:
    """Send a request over a plain socket, its body piece by piece, and stop sending as soon as
    the Server answers: (status, detail, body bytes sent by then)."""
    address = urlsplit(srv.server_url)
    sent = 0
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(head.encode())
        for piece in body:
            if select.select([sock], [], [], 0)[0]:
                break  # answered
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        answer = b""
        while b"\r\n\r\n" not in answer or not _complete(answer):
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    status_line, _, rest = answer.partition(b"\r\n")
    detail = json.loads(rest.partition(b"\r\n\r\n")[2])["detail"]
    return int(status_line.split()[1]), detail, sent


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    return length is not None and len(body) >= int(length[1])


def _chunked(total: int, piece: int = 256 * 1024) -> Iterator[bytes]:
    """`total` bytes of a body in HTTP/1.1 chunks, then the last chunk."""
    for start in range(0, total, piece):
        size = min(piece, total - start)
        yield f"{size:x}\r\n".encode() + b"x" * size + b"\r\n"
    yield b"0\r\n\r\n"


def _head(srv: TestFarm, method: str, path: str, header: str) -> str:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {urlsplit(srv.server_url).netloc}\r\n"
        f"Authorization: Bearer {srv.token}\r\nContent-Type: application/json\r\n{header}\r\n\r\n"
    )


def test_the_blob_query_is_json_and_gets_the_json_limit_not_the_upload_limit(
    srv: TestFarm, http: httpx.Client
) -> None:
    """POST /api/v1/blobs/missing once got the upload limit because its path has '/blobs/'
    in it: a 200 MB JSON body was read and parsed. It is a JSON route like any other."""
    # Larger than this Server's upload limit (2 MB), and a fine query: answered.
    hashes = [sha256(str(n).encode()) for n in range(40_000)]
    assert len(json.dumps({"hashes": hashes})) > MAX_UPLOAD
    assert len(missing(http, *hashes)) == len(hashes)
    # A 200 MB body is refused on its Content-Length alone, with the JSON limit named.
    head = _head(srv, "POST", "/api/v1/blobs/missing", "Content-Length: 200000000")
    status, detail, _ = _raw_request(srv, head)
    assert (status, detail) == (
        413,
        f"The request body is larger than the limit of {JSON_LIMIT} bytes.",
    )


@pytest.mark.parametrize("path", ["/api/v1/blobs/missing", "/api/v1/jobs", "/api/v1/login"])
def test_a_chunked_json_body_gets_a_413_as_soon_as_it_passes_the_limit(
    srv: TestFarm, http: httpx.Client, path: str
) -> None:
    """Without a Content-Length the Server counts what arrives: past the JSON limit it answers
    413 at once, not after reading the rest (here it would be 200 MB), and not a 400."""
    head = _head(srv, "POST", path, "Transfer-Encoding: chunked")
    with leaves_nothing(srv, http):
        status, detail, sent = _raw_request(srv, head, _chunked(200_000_000))
    assert (status, detail) == (
        413,
        f"The request body is larger than the limit of {JSON_LIMIT} bytes.",
    )
    assert sent < JSON_LIMIT + 16 * 1024 * 1024, f"{sent} bytes were sent before the answer"


def test_an_upload_route_keeps_its_own_limit_only_for_its_own_method(
    srv: TestFarm, http: httpx.Client
) -> None:
    """The upload limit belongs to PUT /api/v1/blobs/{sha256} alone: the same address with
    another method is not an upload (405), and its body is held to the JSON limit."""
    digest = sha256(b"not sent")
    head = _head(srv, "POST", f"/api/v1/blobs/{digest}", f"Content-Length: {JSON_LIMIT + 1}")
    status, detail, _ = _raw_request(srv, head)
    assert (status, detail) == (
        413,
        f"The request body is larger than the limit of {JSON_LIMIT} bytes.",
    )
    head = _head(srv, "PUT", f"/api/v1/blobs/{digest}", f"Content-Length: {MAX_UPLOAD + 1}")
    status, detail, _ = _raw_request(srv, head)
    assert (status, detail) == (
        413,
        f"The request body is larger than the limit of {MAX_UPLOAD} bytes.",
    )


# ---- 12. frames from Workers: their names and numbers -----------------------------------------


def _put_frame(
    srv: TestFarm, task_id: str, frame: int, filename: str, data: bytes
) -> httpx.Response:
    return httpx.put(
        f"{srv.server_url}/api/v1/manager/tasks/{task_id}/frames/{frame}",
        params={"filename": filename},
        content=data,
        headers={**_manager_auth(srv), "X-Flamenco-SHA256": sha256(data)},
    )


@blender
@pytest.mark.parametrize(
    ("filename", "frame", "why"),
    [
        ("evil\nname.png", None, "'evil\\nname.png' contains a control character"),
        (".hidden.png", None, "'.hidden.png' is not a plain file name"),
        ("x.html", None, "'x.html' does not end in an image or movie extension"),
        ("frame_000999.png", 999, "Frame 999 is not one of the frames of task"),
    ],
    ids=["newline", "hidden", "html", "frame-999"],
)
def test_a_frame_with_a_bad_name_or_another_tasks_number_is_refused(
    srv: TestFarm,
    http: httpx.Client,
    leased: tuple[str, str],
    filename: str,
    frame: int | None,
    why: str,
) -> None:
    job_id, task_id = leased
    (own_frame, *_) = next(
        t for t in http.get(f"/api/v1/jobs/{job_id}/tasks").json() if t["id"] == task_id
    )["frames"]
    data = f"a frame called {filename!r}".encode()
    with leaves_nothing(srv, http):
        assert_refused(_put_frame(srv, task_id, frame or own_frame, filename, data), 400, why)
    assert missing(http, sha256(data)) == [sha256(data)]
    frames = http.get(f"/api/v1/jobs/{job_id}/frames").json()
    assert all(f["sha256"] != sha256(data) for f in frames), frames
    output_dir = Path(http.get(f"/api/v1/jobs/{job_id}").json()["output_dir"])
    assert not output_dir.exists() or not any(
        p.name in (filename, "name.png", ".hidden.png", "x.html") for p in output_dir.iterdir()
    )


@blender
def test_a_frame_with_a_plain_name_and_its_tasks_number_is_stored(
    srv: TestFarm, http: httpx.Client, leased: tuple[str, str]
) -> None:
    """The control for the refusals above."""
    job_id, task_id = leased
    (frame, *_) = next(
        t for t in http.get(f"/api/v1/jobs/{job_id}/tasks").json() if t["id"] == task_id
    )["frames"]
    picture = io.BytesIO()
    Image.new("RGB", (8, 4), (0, 90, 0)).save(picture, "PNG")  # a whole PNG: it is checked
    response = _put_frame(srv, task_id, frame, f"frame_{frame:06d}.png", picture.getvalue())
    assert response.status_code == 201, response.text
    frames = http.get(f"/api/v1/jobs/{job_id}/frames").json()
    assert [(f["frame"], f["filename"]) for f in frames] == [(frame, f"frame_{frame:06d}.png")]


# ---- 13. numbers are finite: one bad Worker row does not cost a site its sync -----------------


def test_a_manager_sync_with_bad_worker_rows_is_taken_without_them(
    srv: TestFarm, http: httpx.Client
) -> None:
    """A Worker's NaN load once reached the Server as null (JSON has no NaN), and the Server
    then refused every sync of that Manager with a 422: no new task reached the site. Now
    the bad rows are left out and logged, and the sync goes on with the others."""
    body = (
        '{"want": 0, "workers": ['
        '{"name": "nan-load", "status": "awake", "cpu_percent": NaN},'
        '{"name": "null-load", "status": "awake", "cpu_percent": null},'
        '{"name": "healthy", "status": "awake", "cpu_percent": 12.5}]}'
    )
    response = httpx.post(
        f"{srv.server_url}/api/v1/manager/sync",
        content=body,
        headers={**_manager_auth(srv), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    (local,) = [m for m in http.get("/api/v1/managers").json() if m["name"] == "local"]
    assert [(w["name"], w["cpu_percent"]) for w in local["workers"]] == [("healthy", 12.5)]
    server_log = srv.procs[0]
    for name in ("nan-load", "null-load"):
        wait_until(
            lambda name=name: (
                f"a Worker's row was left out: Worker '{name}': cpu_percent" in server_log.output()
            ),
            10,
            f"the Server to log the row of {name}",
        )
