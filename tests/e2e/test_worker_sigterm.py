"""SIGTERM stops a rendering Worker gracefully, and its Blender with all that Blender started.

The Blender here starts a helper of its own that ignores SIGTERM and leaves Blender's process
group (a session of its own), as a script or an add-on may: stopping the Worker must not leave
it, or Blender, running for nobody.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import textwrap
from pathlib import Path

import psutil
import pytest

from farmkit import TestFarm, wait_until
from flamenco import wire

pytestmark = pytest.mark.blender

# Loaded by every Python started with this PYTHONPATH; acts only inside the Worker's Blender.
SITECUSTOMIZE = textwrap.dedent(
    """
    import os, subprocess, sys
    if any(arg.endswith("blender_child.py") for arg in sys.orig_argv):
        helper = subprocess.Popen(
            [sys.executable, "-c", "import signal, time; "
             "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        with open(os.environ["HELPER_PIDS"], "a") as pids:
            pids.write(f"{helper.pid}\\n")
    """
)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigterm_stops_a_rendering_worker_and_its_whole_blender_tree(
    farm: TestFarm, endless_scene: Path, tmp_path: Path
) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    helper_pids = tmp_path / "helper-pids"
    farm.start_server()
    farm.start_manager()
    worker = farm.start_worker(
        "w-sigterm",
        env={"PYTHONPATH": str(tmp_path / "site"), "HELPER_PIDS": str(helper_pids)},
    )
    submitted = farm.cli("submit", str(endless_scene), "--frames", "1-2", "--json")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]

    def rendering() -> bool:
        return any(
            t.status == "active" and t.activity.startswith("frame") for t in farm.tasks(job_id)
        )

    wait_until(rendering, 120, "the Worker's Blender sampling a frame")
    tree = psutil.Process(worker.pid).children(recursive=True)
    try:
        helpers = [int(pid) for pid in helper_pids.read_text().split()]
        assert helpers and {p.pid for p in tree} > set(helpers), (tree, helpers)
        os.kill(worker.pid, signal.SIGTERM)  # the Worker alone, not its process group
        assert worker.popen.wait(30) == 0, worker.output()[-3000:]
        wait_until(lambda: all(gone(p.pid) for p in tree), 10, f"{tree} all gone")
    finally:
        for process in tree:  # only if the test failed: nothing may outlive it
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()

    # Handed back at once (held by the Manager again, for another Worker) rather than after the
    # Manager's Worker timeout.
    def handed_back() -> bool:
        tasks = farm.tasks(job_id)
        return all(t.status in {"leased", "queued"} for t in tasks) and any(
            t.activity == "worker stopped" for t in tasks
        )

    wait_until(handed_back, 30, "the task handed back by the stopped Worker")
    # It signed off as it stopped: offline on its Manager now, and on the Server with the
    # Manager's next sync, not once found silent (a minute by default).
    workers = farm.workers_on_manager()
    assert [(name, w["status"]) for name, w in workers.items()] == [("w-sigterm", "offline")]

    def offline_on_the_server() -> bool:
        (site,) = farm.api().call("GET", "/api/v1/managers", wire.ManagerList).root
        return [(w.name, w.status) for w in site.workers] == [("w-sigterm", "offline")]

    wait_until(offline_on_the_server, 10, "the Server showing the Worker offline")
