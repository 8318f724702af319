"""bench/soak.py --quick: the soak benchmark runs end to end on a real Server and Manager,
writes its report, and leaves no process behind. Not the benchmark itself (that takes ten
minutes; docs/PERFORMANCE.md has its record), only that the script still works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from farmkit import process_gone

REPO = Path(__file__).resolve().parents[1]


def test_soak_quick_mode_reports_memory_and_disk_and_stops_its_processes(tmp_path: Path) -> None:
    report = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--quick", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict:" in done.stdout
    result = json.loads(report.read_text())
    assert result["tasks_completed"] > 0 and result["frames_sent"] > 0
    assert result["errors"] == {}
    assert len(result["samples"]) == 3  # after warm-up, one between, at the end
    for sample in result["samples"]:
        assert all(sample["rss"][p] > 0 for p in ("server", "manager", "simulator"))
        assert sample["disk"]["server"]["db"] > 0 and sample["disk"]["manager"]["db"] > 0
    assert set(result["verdicts"]) == {
        "RSS server",
        "RSS manager",
        "RSS simulator",
        "disk server",
        "disk manager",
    }
    for label in ("server", "manager"):
        assert process_gone(result["pids"][label]), f"the soak left its {label} running"
