"""A studio's own output settings through the farm: a 16-bit multilayer EXR scene renders as
itself by default, `--output-format` overrides it, and a format Blender does not know is
refused before anything is uploaded."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from exrkit import exr_channels, exr_scene
from farmkit import TestFarm
from flamenco import wire
from flamenco.images import open_image
from flamenco.worker.blender import BlenderInstall

pytestmark = pytest.mark.blender

# Every pass the scene enables, as OpenEXR groups Blender's channels into layers: (shape tail,
# pixel type). Combined is RGBA at the scene's 16 bits (half float).
EXPECTED_PASSES = {
    "ViewLayer.Combined": ((4,), "float16"),
    "ViewLayer.Depth.Z": ((), None),
    "ViewLayer.Normal.X": ((), None),
    "ViewLayer.Normal.Y": ((), None),
    "ViewLayer.Normal.Z": ((), None),
}


def submit(farm: TestFarm, scene: Path, *extra: str) -> str:
    done = farm.cli("submit", str(scene), "--json", *extra)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def download(farm: TestFarm, job_id: str, dest: Path) -> list[Path]:
    assert farm.wait_job(job_id).status == "completed", farm.logs()
    fetched = farm.cli("jobs", "download", job_id, str(dest))
    assert fetched.returncode == 0, fetched.stderr
    return sorted(dest.iterdir())


def shown_format(farm: TestFarm, job_id: str) -> str:
    shown = farm.cli("jobs", "show", job_id)
    assert shown.returncode == 0, shown.stderr
    [line] = [line for line in shown.stdout.splitlines() if line.startswith("Format: ")]
    return line.removeprefix("Format: ")


def test_a_multilayer_exr_scene_renders_as_itself_unless_the_job_names_a_format(
    farm: TestFarm, blender_install: BlenderInstall, demo_scene: Path, tmp_path: Path
) -> None:
    scene = exr_scene(blender_install, demo_scene, tmp_path / "studio" / "shot.blend")
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w1")

    refused = farm.cli("submit", str(scene), "--frames", "1", "--output-format", "GIF")
    assert refused.returncode != 0
    assert "'output_format' must be one of SCENE, OPEN_EXR_MULTILAYER, OPEN_EXR, PNG" in (
        refused.stderr
    )
    assert "got 'GIF'" in refused.stderr
    assert farm.api().call("GET", "/api/v1/jobs", wire.JobList).root == []  # nothing made

    own = submit(farm, scene, "--frames", "1-2")
    png = submit(farm, scene, "--frames", "1", "--output-format", "PNG")

    frames = download(farm, own, tmp_path / "own")
    assert [f.name for f in frames] == ["frame_000001.exr", "frame_000002.exr"]
    infos = {
        f.frame: f
        for f in farm.api().call("GET", f"/api/v1/jobs/{own}/frames", wire.FrameList).root
    }
    output_dir = Path(farm.job(own).output_dir)
    api = farm.api()
    for number, path in enumerate(frames, 1):
        channels = exr_channels(path)
        for name, (tail, dtype) in EXPECTED_PASSES.items():
            assert name in channels, sorted(channels)
            assert channels[name][0][2:] == tail and dtype in (None, channels[name][1]), name
        # What Blender wrote arrives unchanged: the Worker hashed its file, the Server checked
        # that hash while receiving it, and the output folder and a download hold those bytes.
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == infos[number].sha256
        assert (output_dir / path.name).read_bytes() == data
        assert (infos[number].width, infos[number].height) == channels["ViewLayer.Combined"][0][
            1::-1
        ]
        answer = api.request("GET", f"/api/v1/jobs/{own}/frames/{number}/thumbnail")
        assert answer.status_code == 200, answer.text
        with Image.open(io.BytesIO(answer.content)) as thumb, open_image(path) as beauty:
            assert thumb.format == "JPEG" and max(thumb.size) == min(256, max(beauty.size))
            expected = beauty.resize(thumb.size)
            difference = ImageStat.Stat(ImageChops.difference(thumb.convert("RGB"), expected))
            assert max(difference.mean) < 6, difference.mean  # the beauty, JPEG-compressed
            assert ImageStat.Stat(thumb.convert("L")).extrema[0][1] > 40, "thumbnail is black"
    assert shown_format(farm, own) == "from the scene (.exr)"

    [overridden] = download(farm, png, tmp_path / "png")
    assert overridden.name == "frame_000001.png"
    with Image.open(overridden) as image:
        assert image.format == "PNG"
    assert shown_format(farm, png) == "PNG"
