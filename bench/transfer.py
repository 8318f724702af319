"""What does a job cost on the wire? Resubmission uploads, and one fetch per blob per site.

    .venv/bin/python bench/transfer.py [--texture-mb 50] [--textures 5] [--site-workers 10]
        [--json PATH] [--keep DIR]

(a) Resubmission. A real scene is built with bpy (installed in the venv): a plane whose
    material uses --textures image textures, PNGs of random noise (they do not compress)
    of --texture-mb MB together, referenced by relative paths (//textures/...). It is
    submitted with `flamenco submit` (the CLI as a user runs it, against a real Server),
    then submitted again unchanged, then once more after one texture was rewritten. For
    each submission: the bytes the CLI reports ("Files: uploaded N of M files (B bytes)")
    and the growth of the Server's blob store on disk. Target: the unchanged resubmission
    uploads < 1% of the first one.

(b) One fetch per blob per site. A real Manager starts with an empty cache; --site-workers
    simulated Workers (aiohttp, one process) register, each takes a task of the job by the
    normal long-poll sync, then all of them GET every blob of their assignment at the same
    moment (`GET /api/v1/blobs/{sha}` with their Worker tokens). The Manager's status
    (`blob_downloads`, with the Manager's token) says how many times it fetched from the
    Server. Target: once per blob. A second wave measures serving from the warm cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simfarm import BenchFarm, SimClient, machine, register_workers

console = Console(width=130)
UPLOADED = re.compile(r"Files: uploaded (\d+) of (\d+) files \((\d+) bytes\)")

BUILD_SCENE = r"""
import sys
from pathlib import Path

import bpy

out, *images = sys.argv[1:]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
mesh = bpy.data.meshes.new("plane")
mesh.from_pydata([(-1, -1, 0), (1, -1, 0), (1, 1, 0), (-1, 1, 0)], [], [(0, 1, 2, 3)])
plane = bpy.data.objects.new("plane", mesh)
scene.collection.objects.link(plane)
cam = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
cam.location = (0, 0, 4)
scene.collection.objects.link(cam)
scene.camera = cam
mat = bpy.data.materials.new("textured")
if hasattr(mat, "use_nodes"):
    mat.use_nodes = True
nodes = mat.node_tree.nodes
bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
previous = None
for i, path in enumerate(images):
    img = bpy.data.images.load(path)
    img.filepath = "//" + str(Path(path).relative_to(Path(out).parent))
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = img
    if previous is None:
        previous = tex.outputs["Color"]
        continue
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mat.node_tree.links.new(previous, mix.inputs[6])
    mat.node_tree.links.new(tex.outputs["Color"], mix.inputs[7])
    previous = mix.outputs[2]
mat.node_tree.links.new(previous, bsdf.inputs["Base Color"])
mesh.materials.append(mat)
scene.render.resolution_x, scene.render.resolution_y = 64, 64
bpy.ops.wm.save_as_mainfile(filepath=out, relative_remap=False, compress=False)
print("saved", out, [im.filepath for im in bpy.data.images])
"""


def write_noise_png(path: Path, nbytes: int, seed: int) -> None:
    """An RGB PNG of random noise, about `nbytes` large (noise does not compress)."""
    from PIL import Image

    side = int((nbytes / 3) ** 0.5)
    data = random_bytes(side * side * 3, seed)
    Image.frombytes("RGB", (side, side), data).save(path, compress_level=1)


def random_bytes(n: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def build_scene(folder: Path, total_mb: float, count: int) -> tuple[Path, list[Path]]:
    textures = folder / "textures"
    textures.mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(count):
        path = textures / f"noise_{i}.png"
        write_noise_png(path, int(total_mb * 1e6 / count), seed=i)
        images.append(path)
    blend = folder / "scene.blend"
    subprocess.run(
        [sys.executable, "-c", BUILD_SCENE, str(blend), *map(str, images)],
        check=True,
        capture_output=True,
        text=True,
    )
    return blend, images


def folder_bytes(folder: Path) -> tuple[int, int]:
    files = [
        p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] != "tmp"
    ]
    return len(files), sum(p.stat().st_size for p in files)


def submit(farm: BenchFarm, blend: Path, label: str) -> dict[str, Any]:
    store = farm.root / "server" / "blobs"
    n0, b0 = folder_bytes(store)
    t0 = time.perf_counter()
    proc = farm.cli("submit", str(blend), "--frames", "1-10", "--chunk", "1", "--name", label)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"flamenco submit failed:\n{proc.stderr}")
    n1, b1 = folder_bytes(store)
    match = UPLOADED.search(proc.stderr)
    if match is None:
        raise RuntimeError(f"no 'Files: uploaded' line in:\n{proc.stderr}")
    sent, total, sent_bytes = map(int, match.groups())
    return {
        "submission": label,
        "job_id": proc.stdout.strip().splitlines()[-1],
        "files_in_job": total,
        "files_uploaded": sent,
        "bytes_uploaded_cli": sent_bytes,
        "server_store_growth_bytes": b1 - b0,
        "server_store_growth_files": n1 - n0,
        "seconds": round(seconds, 2),
    }


def part_a(farm: BenchFarm, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    t = time.perf_counter()
    blend, images = build_scene(work / "project", args.texture_mb, args.textures)
    build_s = time.perf_counter() - t
    job_bytes = blend.stat().st_size + sum(p.stat().st_size for p in images)
    rows = [submit(farm, blend, "first"), submit(farm, blend, "unchanged")]
    write_noise_png(images[0], int(args.texture_mb * 1e6 / args.textures), seed=1000)
    rows.append(submit(farm, blend, "one-texture-changed"))
    first = rows[0]["bytes_uploaded_cli"]
    for row in rows:
        row["ratio_vs_first"] = row["bytes_uploaded_cli"] / first if first else float("nan")
    return {
        "scene_build_s": round(build_s, 1),
        "job_files": 1 + len(images),
        "job_bytes_on_disk": job_bytes,
        "changed_texture_bytes": images[0].stat().st_size,
        "submissions": rows,
    }


async def fetch_wave(
    client: SimClient, creds: list[tuple[str, str]], files: list[dict[str, str]]
) -> dict[str, Any]:
    start = asyncio.Event()

    async def worker(token: str, manifest: dict[str, str]) -> tuple[int, int, list[int]]:
        await start.wait()
        replies = await asyncio.gather(
            *(client.get_bytes(f"/api/v1/blobs/{sha}", token) for sha in set(manifest.values()))
        )
        return len(replies), sum(n for _, n in replies), [s for s, _ in replies]

    jobs = [
        asyncio.create_task(worker(token, manifest))
        for (_, token), manifest in zip(creds, files, strict=True)
    ]
    await asyncio.sleep(0.2)  # every worker is waiting on the same event
    t0 = time.perf_counter()
    start.set()
    results = await asyncio.gather(*jobs)
    seconds = time.perf_counter() - t0
    statuses = [s for _, _, ss in results for s in ss]
    return {
        "requests": sum(r[0] for r in results),
        "bytes_served": sum(r[1] for r in results),
        "non_200": sum(1 for s in statuses if s != 200),
        "seconds": round(seconds, 2),
    }


def manager_blob_downloads(farm: BenchFarm) -> int:
    assert farm.secrets is not None
    reply = httpx.get(
        f"{farm.manager_url}/api/v1/status",
        headers={"Authorization": f"Bearer {farm.secrets.manager_token}"},
        timeout=30,
    )
    return int(reply.json()["blob_downloads"])


async def part_b_async(farm: BenchFarm, args: argparse.Namespace) -> dict[str, Any]:
    assert farm.secrets is not None
    client = SimClient(farm.manager_url)
    try:
        creds = await register_workers(client, farm.secrets.worker_secret, args.site_workers)

        async def take(token: str) -> dict[str, str]:
            body = {"want_task": True, "wait_s": 10, "status": "awake"}
            for _ in range(10):
                status, reply = await client.post("/api/v1/worker/sync", body, token)
                if status == 200 and reply.get("assignment"):
                    return reply["assignment"]
            raise RuntimeError("no assignment for a simulated Worker")

        assignments = await asyncio.gather(*(take(token) for _, token in creds))
        files = [a["files"] for a in assignments]
        distinct = {sha for manifest in files for sha in manifest.values()}
        before = manager_blob_downloads(farm)
        cold = await fetch_wave(client, creds, files)
        after_cold = manager_blob_downloads(farm)
        warm = await fetch_wave(client, creds, files)
        after_warm = manager_blob_downloads(farm)
    finally:
        await client.close()
    cache = farm.root / "manager-local" / "blobs"
    store = farm.root / "server" / "blobs"
    sizes = {
        sha: (store / sha[:2] / sha).stat().st_size
        for sha in distinct
        if (store / sha[:2] / sha).exists()
    }
    return {
        "workers": args.site_workers,
        "jobs_of_assignments": sorted({a["job_id"] for a in assignments}),
        "distinct_blobs": len(distinct),
        "distinct_blob_bytes": sum(sizes.values()) if len(sizes) == len(distinct) else None,
        "cold_wave": cold,
        "warm_wave": warm,
        "manager_downloads_before": before,
        "manager_downloads_cold_wave": after_cold - before,
        "manager_downloads_warm_wave": after_warm - after_cold,
        "manager_cache_files_bytes": folder_bytes(cache),
    }


def show(result: dict[str, Any]) -> None:
    a = result["a"]
    table = Table(
        title=f"(a) resubmission: {a['job_files']} files, {a['job_bytes_on_disk'] / 1e6:.1f} MB "
        "on disk"
    )
    for col in (
        "submission",
        "files sent",
        "bytes sent (CLI)",
        "Server store growth",
        "vs first",
        "seconds",
    ):
        table.add_column(col, justify="left" if col == "submission" else "right")
    for row in a["submissions"]:
        table.add_row(
            row["submission"],
            f"{row['files_uploaded']} of {row['files_in_job']}",
            f"{row['bytes_uploaded_cli']:,}",
            f"{row['server_store_growth_bytes']:,}",
            f"{row['ratio_vs_first'] * 100:.3f} %",
            f"{row['seconds']:.2f}",
        )
    console.print(table)
    b = result["b"]
    table = Table(
        title=f"(b) {b['workers']} Workers of one site fetch the same job's blobs at once"
    )
    table.add_column("measure")
    table.add_column("cold cache", justify="right")
    table.add_column("warm cache", justify="right")
    table.add_row(
        "GET requests (non-200)",
        f"{b['cold_wave']['requests']} ({b['cold_wave']['non_200']})",
        f"{b['warm_wave']['requests']} ({b['warm_wave']['non_200']})",
    )
    table.add_row(
        "bytes served to Workers",
        f"{b['cold_wave']['bytes_served']:,}",
        f"{b['warm_wave']['bytes_served']:,}",
    )
    table.add_row("seconds", f"{b['cold_wave']['seconds']:.2f}", f"{b['warm_wave']['seconds']:.2f}")
    table.add_row(
        f"Manager fetches from Server ({b['distinct_blobs']} distinct blobs)",
        str(b["manager_downloads_cold_wave"]),
        str(b["manager_downloads_warm_wave"]),
    )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texture-mb", type=float, default=50.0)
    parser.add_argument("--textures", type=int, default=5)
    parser.add_argument("--site-workers", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", default=None)
    args = parser.parse_args()
    info = machine()
    console.print(
        f"[dim]{info['nproc']} cores ({info['cpu_model']}), load average "
        f"{' '.join(f'{x:.2f}' for x in info['loadavg'])}[/dim]"
    )
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="flamenco-transfer-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        with BenchFarm(root / "farm") as farm:
            farm.start_server()
            result: dict[str, Any] = {"a": part_a(farm, root, args)}
            farm.start_manager()
            result["b"] = asyncio.run(part_b_async(farm, args))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    info["loadavg_end"] = list(os.getloadavg())
    show(result)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, **result}, indent=2, default=str))


if __name__ == "__main__":
    main()
