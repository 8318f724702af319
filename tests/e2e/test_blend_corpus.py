"""Real .blend files with every kind of dependency, sent through one farm.

The corpus (tests/data/blend-corpus, see its README) holds files made with Blender 2.79-3.2
by the authors of blender-asset-tracer. For each: the files it uses that exist arrive at the
Worker and open there, the missing ones are named at submission, the corrupt file is refused
with one sentence, and the two smoke files that crash Blender fail their task with the reason
after the Server's three tries instead of retrying forever.

All files share one farm (Server, Manager, one Worker) and are submitted up front, so the
Worker renders while the tests look at the jobs one after the other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import pytest
from blender_asset_tracer import blendfile
from PIL import Image

from farmkit import FINAL, TestFarm, wait_until
from flamenco import wire
from flamenco.client import ApiError
from flamenco.packing import pack_scene
from testdata import CORPUS

pytestmark = pytest.mark.blender


WORKER = "w1"
# The files with a camera render at 1920x1080 and more, some with EEVEE, which starts slowly
# on a machine without a GPU: render them with Cycles at this size, under a second a frame.
# Only these fields of the Scene change; every path and data block stays as it was saved.
RENDER_SIZE = (32, 18)
MISSING_LINE = re.compile(r"^Flamenco: missing file after loading: (.+)$", re.MULTILINE)
# Why a scene without a camera does not render: Blender's own reason, after the file loaded.
RENDER_REFUSALS = ("Cannot render, no camera",)
LOAD_FAILURES = ("Could not read blend file", "has no scene to render", "before it was ready")
HACK_FONT = Path("/usr/share/fonts/truetype/hack/Hack-Bold.ttf")


@dataclass(frozen=True)
class Case:
    path: str  # inside the corpus
    missing: frozenset[str] = frozenset()  # basenames the tracer cannot find
    camera: bool = False  # renders as it is: the job must complete
    frames: str = "1"
    flags: tuple[str, ...] = ()  # more `flamenco submit` options

    @property
    def param(self) -> object:
        return pytest.param(self, id=self.path)


def row(
    path: str,
    *missing: str,
    camera: bool = False,
    frames: str = "1",
) -> Case:
    return Case(path, frozenset(missing), camera, frames)


CASES = [
    # Its particle cache is expected in blendcache_bam_pack_bug/, which is not there; the
    # point cache's unused 'external' path, which Blender does not read, is not reported.
    row("T53562/bam_pack_bug.blend", "particles_*.bphys", camera=True),
    # The 27 .bphys files of blendcache_particle/ travel; the unused external path does not.
    row("T55539-particles/particle.blend", camera=True),
    row("absolute_path.blend", "buildings_roof_04-color.png", "brick_dotted_04-color.jpg"),
    row("alembic-sequence-user.blend"),  # clothsim.030-035.abc
    row("alembic-user.blend"),
    row("basic_file.blend"),
    row("basic_file_compressed.blend"),  # gzip
    row("basic_file_compressed_zstd.blend"),
    row("basic_file_zstandard.blend"),
    row("doubly_linked.blend", "material_textures.blend"),
    row("geometry-nodes/file_to_pack.blend", camera=True),
    row("geometry-nodes-2/shot_file.blend"),
    row("geometry-nodes-3/shot_file.blend"),
    # Scenes with sequencer strips render through the sequencer, camera or not.
    row("image_sequencer.blend", "video-tiny.mkv", camera=True),
    row("linked_cube.blend"),
    row("linked_cube_compressed.blend", "basic_file.blend"),  # an absolute path elsewhere
    row("meshcache-user.blend"),
    row(
        "missing_textures.blend",
        "Golden Palace 2, Old Bagan-1k.exr",
        "marble_decoration-color.png",
    ),
    row("movieclip.blend", "video.mov"),
    row("multires_external.blend"),  # Cube.btx
    row("ocean_modifier.blend", "cache_ocean"),
    row("recursive_dependency_1.blend"),
    row("subdir/doubly_linked_up.blend", "material_textures.blend"),
    row("subdir/doubly_linked_up-windows.blend", "material_textures.blend"),
    row("subdir/image_sequence_dir_up.blend", camera=True),  # sequencer
    row("udim/v01_UDIM_BAT_debugging.blend", camera=True),  # three UDIM tiles
    # An absolute path to a system font: missing unless this machine has fonts-hack.
    row("with_font.blend", *(() if HACK_FONT.is_file() else (HACK_FONT.name,))),
    row("with_sequencer.blend", camera=True),  # sequencer
]

# The README's crashers. Blender 5.0.1 aborts on them with Mantaflow's "terminate called
# after throwing an instance of 'Manta::Error'" (SIGABRT) whenever it frees their fluid
# solver: when it loads another file after them, exits normally, or renders a frame other
# than the first. The Worker's Blender loads one file per process and leaves with _exit, so
# it gets past loading; frame 10 makes it crash, in a second, on every try. Their caches
# travel, though Blender 5 looks for the fluid cache in a folder of its temp dir.
# Blender 5.0.1 aborts (Mantaflow) when it frees these scenes' smoke data after a render;
# with Cycles' persistent data on it keeps that data and renders them, so they are submitted
# with --no-persistent-data: the crash is what they test.
CRASHERS = [
    dataclasses.replace(
        row(f"T55542-smoke/{name}.blend", camera=True, frames="10"),
        flags=("--no-persistent-data",),
    )
    for name in ("smoke_cache", "smoke_cache_vdb")
]
CORRUPT = "corrupt_only_magic.blend"


# ---- one farm for the whole corpus ----------------------------------------------------------


@dataclass
class Submission:
    case: Case
    accepted: subprocess.CompletedProcess[str]
    refused: subprocess.CompletedProcess[str] | None = None  # without --allow-missing

    @property
    def job_id(self) -> str:
        assert self.accepted.returncode == 0, self.accepted.stderr
        return str(json.loads(self.accepted.stdout)["id"])


@dataclass
class Packed:
    blend: str
    files: dict[str, bytes | None]  # path inside the job -> contents (None for .blend copies)
    missing: list[Path]


@dataclass
class Outcome:
    job: wire.Job
    task: wire.Task
    log: str
    worker_files: dict[str, Path]  # path inside the job -> file on the Worker's disk


@dataclass
class Corpus:
    """The farm at work on the corpus; each answer waits for what it needs, and only that."""

    root: Path
    farm: TestFarm
    corrupt: Future[subprocess.CompletedProcess[str]]
    submissions: dict[str, Future[Submission]]
    packs: dict[str, Future[Packed]]
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def submission(self, case: Case) -> Submission:
        return self.submissions[case.path].result()

    def packed(self, case: Case) -> Packed:
        return self.packs[case.path].result()

    def outcome(self, case: Case) -> Outcome:
        """The job of `case` once it has ended, with its task's log and the Worker's files.

        A scene without a camera fails on every try: its job is canceled after the first,
        which is all there is to see, unless the Worker got to the other two first.
        """
        if case.path not in self.outcomes:
            job_id = self.submission(case).job_id
            if not case.camera:
                wait_until(
                    lambda: (
                        self.farm.tasks(job_id)[0].failure_count > 0
                        or self.farm.job(job_id).status in FINAL
                    ),
                    240,
                    f"the first try of {case.path}",
                )
                with contextlib.suppress(ApiError):  # it may have failed three times already
                    self.farm.api().request("POST", f"/api/v1/jobs/{job_id}/cancel")
            job = self.farm.wait_job(job_id)
            [task] = self.farm.tasks(job_id)
            log = self.farm.api().request("GET", f"/api/v1/jobs/{job_id}/tasks/{task.id}/log")
            files = self.farm.root / WORKER / "jobs" / job_id / "files"
            on_disk = {p.relative_to(files).as_posix(): p for p in files.rglob("*") if p.is_file()}
            self.outcomes[case.path] = Outcome(job, task, log.text, on_disk)
        return self.outcomes[case.path]


def copy_corpus(target: Path) -> Path:
    if not CORPUS.is_dir():
        pytest.fail(
            f"The .blend corpus is missing: expected {CORPUS} (tests/data/blend-corpus "
            "in this checkout) with the files its README lists."
        )
    root = target / "blend-corpus"
    shutil.copytree(CORPUS, root)
    for path in [root, *root.rglob("*")]:  # the originals are read-only
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return root


def cheap_render(blend: Path) -> None:
    """Cycles at RENDER_SIZE, 100 %: four fields changed in place, nothing else rewritten."""
    bfile = blendfile.BlendFile(blend, mode="r+b")
    try:
        for scene in bfile.code_index[b"SC"]:
            scene.set((b"r", b"xsch"), RENDER_SIZE[0])
            scene.set((b"r", b"ysch"), RENDER_SIZE[1])
            scene.set((b"r", b"size"), 100)
            scene.set((b"r", b"engine"), "CYCLES")
    finally:
        bfile.close()


def submit(farm: TestFarm, blend: Path, frames: str, *flags: str) -> subprocess.CompletedProcess:
    return farm.cli("submit", str(blend), "--frames", frames, "--json", *flags)


def submit_case(farm: TestFarm, root: Path, case: Case) -> Submission:
    blend = root / case.path
    if not case.missing:
        return Submission(case, accepted=submit(farm, blend, case.frames, *case.flags))
    refused = submit(farm, blend, case.frames, "--name", f"refused-{blend.stem}")
    return Submission(case, submit(farm, blend, case.frames, "--allow-missing"), refused)


def pack_again(blend: Path) -> Packed:
    """What the submission sent: the tracer's job folder, computed again from the same input."""
    scene = pack_scene(blend)
    try:
        # The tracer writes fresh copies of .blend files with rewritten paths: compare those
        # by name only; every other file must arrive byte for byte.
        files = {
            rel: None if rel.endswith(".blend") else path.read_bytes()
            for rel, path in scene.files.items()
        }
        return Packed(scene.blend, files, scene.missing)
    finally:
        scene.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    root = copy_corpus(tmp_path_factory.mktemp("corpus"))
    cases = CRASHERS + CASES
    for c in cases:
        if c.camera:
            cheap_render(root / c.path)
    with (
        TestFarm(tmp_path_factory.mktemp("farm")) as farm,
        # Each `flamenco submit` mostly waits (for uploads, for the Server):
        # several run side by side. The tracer keeps global state, so the test's own packing
        # runs in one thread of its own. Both go on while the tests look at finished jobs.
        ThreadPoolExecutor(max_workers=6) as submitters,
        ThreadPoolExecutor(max_workers=1) as packer,
    ):
        farm.start_server()
        farm.start_manager()
        farm.start_worker(WORKER)
        yield Corpus(
            root,
            farm,
            corrupt=submitters.submit(submit, farm, root / CORRUPT, "1"),
            submissions={c.path: submitters.submit(submit_case, farm, root, c) for c in cases},
            packs={c.path: packer.submit(pack_again, root / c.path) for c in cases},
        )


# ---- what each file must do --------------------------------------------------------------------


def one_line(text: str) -> str:
    """The CLI's console wraps long lines at spaces; join them again."""
    return " ".join(text.split())


def missing_on_worker(log: str) -> list[str]:
    return MISSING_LINE.findall(log)


def check_submission(sub: Submission, pack: Packed) -> None:
    case = sub.case
    found_missing = {PurePath(p).name for p in pack.missing}
    assert found_missing == case.missing, f"the tracer reports missing: {pack.missing}"
    if case.missing:
        assert sub.refused is not None
        assert sub.refused.returncode != 0, sub.refused.stdout
        refusal = one_line(sub.refused.stderr)
        assert "missing" in refusal and "--allow-missing" in refusal, refusal
        for name in case.missing:
            assert name in refusal, f"{name!r} is not named in: {refusal}"
        for path in pack.missing:  # the Worker will warn about the same, so say it fully
            assert one_line(str(path)) in one_line(sub.accepted.stderr)
    assert sub.accepted.returncode == 0, sub.accepted.stderr


def check_files_arrived(outcome: Outcome, pack: Packed) -> None:
    absent = sorted(set(pack.files) - set(outcome.worker_files))
    assert not absent, f"not on the Worker: {absent}; it has {sorted(outcome.worker_files)}"
    if outcome.task.failure_count == 0:  # fetched once: nothing else is there
        assert set(outcome.worker_files) == set(pack.files)
    for rel, content in pack.files.items():
        if content is not None:
            assert outcome.worker_files[rel].read_bytes() == content, rel
    blend_on_worker = outcome.worker_files[pack.blend]
    assert blend_on_worker.stat().st_size > 0


def check_opened(outcome: Outcome, pack: Packed, case: Case) -> None:
    log = outcome.log
    blend_on_worker = outcome.worker_files[pack.blend]
    assert f'Read blend: "{blend_on_worker}"' in log, log[-3000:]
    for failure in LOAD_FAILURES:
        assert failure not in log, log[-3000:]
    reported = missing_on_worker(log)
    shipped = {PurePath(rel).name for rel in pack.files}
    for path in reported:
        inside = PurePath(path).is_relative_to(blend_on_worker.parent)
        rel = PurePath(path).relative_to(blend_on_worker.parent).as_posix() if inside else None
        assert rel not in pack.files, f"the Worker cannot find {path}, which was shipped"
        assert PurePath(path).name not in shipped, f"{path}: a file of that name was shipped"
    names = {PurePath(p).name for p in reported}
    assert names <= case.missing, f"missing on the Worker: {reported}"


@pytest.mark.parametrize("case", [c.param for c in CASES])
def test_dependencies_arrive_and_open_on_the_worker(corpus: Corpus, case: Case) -> None:
    sub = corpus.submission(case)
    pack = corpus.packed(case)
    check_submission(sub, pack)

    outcome = corpus.outcome(case)
    log = outcome.log
    if case.camera:
        assert outcome.job.status == "completed", log[-3000:]
        frames = corpus.farm.api().call(
            "GET", f"/api/v1/jobs/{outcome.job.id}/frames", wire.FrameList
        )
        assert [f.frame for f in frames.root] == [1]
        frame = Path(outcome.job.output_dir) / "frame_000001.png"
        assert Image.open(frame).size == RENDER_SIZE
    else:
        # Nothing to render from: the task fails once the file has loaded, for that reason.
        assert outcome.job.status in ("canceled", "failed"), log[-3000:]
        errors = [line for line in log.splitlines() if line.startswith("ERROR: ")]
        # A try that ends as the job is canceled leaves its ERROR line but counts no failure.
        assert errors and outcome.task.failure_count > 0, errors
        assert all(any(r in e for r in RENDER_REFUSALS) for e in errors), errors
    check_files_arrived(outcome, pack)
    check_opened(outcome, pack, case)


def test_a_retried_task_leaves_only_the_job_files_on_the_worker(corpus: Corpus) -> None:
    case = CRASHERS[0]
    outcome = corpus.outcome(case)
    assert outcome.task.failure_count == 3  # three fetches on the one Worker
    assert sorted(outcome.worker_files) == sorted(corpus.packed(case).files)


@pytest.mark.parametrize("case", [c.param for c in CRASHERS])
def test_a_file_that_crashes_blender_fails_its_task_with_the_reason(
    corpus: Corpus, case: Case
) -> None:
    sub = corpus.submission(case)
    pack = corpus.packed(case)
    check_submission(sub, pack)
    assert len(pack.files) == 11  # the scene and ten frames of its smoke cache

    outcome = corpus.outcome(case)
    log = outcome.log
    assert outcome.job.status == "failed", log[-3000:]
    assert outcome.task.status == "failed"
    assert outcome.task.failure_count == 3  # the Server's max_task_failures, then no more
    reasons = [line for line in log.splitlines() if line.startswith("ERROR: ")]
    assert len(reasons) == 3, reasons
    for reason in reasons:
        assert re.match(r"ERROR: Blender \(pid \d+\) was killed by SIGABRT while rendering", reason)
    assert "terminate called after throwing an instance of 'Manta::Error'" in log
    check_files_arrived(outcome, pack)
    check_opened(outcome, pack, case)


def test_a_scene_saved_with_video_output_renders_to_png(corpus: Corpus) -> None:
    [case] = [c for c in CASES if c.path == "basic_file.blend"]  # saved with FFMPEG output
    log = corpus.outcome(case).log
    errors = [line for line in log.splitlines() if line.startswith("ERROR: ")]
    assert errors and set(errors) == {"ERROR: Cannot render, no camera"}  # Blender's reason


def test_the_corrupt_file_is_refused_with_one_sentence(corpus: Corpus) -> None:
    refused = corpus.corrupt.result()
    assert refused.returncode != 0
    assert refused.stdout == ""
    # Refused before anything is uploaded, with the sentence the Server would answer (415).
    assert refused.stderr.strip().splitlines()[-1] == (
        f"Error: The file '{CORRUPT}' is a .blend file without any data blocks."
    )
    assert "Files:" not in refused.stderr, refused.stderr
    for sub in corpus.submissions.values():
        sub.result()  # every job that will be there is there
    jobs = corpus.farm.api().call("GET", "/api/v1/jobs", wire.JobList).root
    names = {job.name for job in jobs}
    assert PurePath(CORRUPT).stem not in names
    # Nor did any refused submission with missing files create a job.
    assert not {name for name in names if name.startswith("refused-")}
    assert len(jobs) == len(CASES) + len(CRASHERS)


def test_every_user_file_of_the_corpus_is_covered() -> None:
    """A .blend added to the corpus gets a row here."""
    if not CORPUS.is_dir():
        pytest.fail(f"The .blend corpus is missing: expected {CORPUS}.")
    # Libraries and sources of the scenes above, and two files the README does not list.
    not_scenes = {
        "alembic-sequence-source.blend",
        "alembic-source.blend",
        "geometry-nodes/node_lib.blend",
        "geometry-nodes/object_lib.blend",
        "lamp_textures.blend",
        "meshcache-source.blend",
        "multiple_materials.blend",
        "recursive_dependency_2.blend",
        *(f"geometry-nodes-{n}/{f}.blend" for n in (2, 3) for f in ("lib_trash", "set_file")),
    }
    on_disk = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*.blend")}
    covered = {c.path for c in CASES + CRASHERS} | {CORRUPT}
    assert on_disk - not_scenes == covered
