"""`blender-script`: a job's own Python script, run inside Blender with the job's file open,
and the files it lists sent up as the job's files (a baked cache, say).

Parameters: blend and script (paths in the job's files), args (FLAMENCO_ARGS of the script),
frame (set as the scene's current frame first; optional). The script appends the paths of
what it made to FLAMENCO_OUTPUTS, absolute or relative to the job's folder (its working
folder while it runs); each goes to the Server under its path relative to the job's folder.
A script that raises fails the job at once with its traceback's last line, as it would on
every Worker; so does a listed file that does not exist.
"""

from __future__ import annotations

from flamenco.commands import CommandFailed, CommandTask, Reporter
from flamenco.core.faults import Fault


class BlenderScript:
    name = "blender-script"

    async def run(self, task: CommandTask, report: Reporter) -> None:
        params = task.parameters
        script = str(params["script"])
        frame = params.get("frame")
        ready = await task.blender.open(task.job_file(str(params["blend"])))
        report.log(f"Flamenco: running {script} in Blender {ready.version} ({ready.where})")
        report.progress(0.0, f"running {script}")
        outputs = await task.blender.run_script(
            task.job_file(script),
            [str(arg) for arg in params.get("args") or []],
            None if frame is None else int(frame),
        )
        missing = [path for path in outputs if not path.is_file()]
        if missing:
            listed = missing[0]
            if listed.is_relative_to(task.job_dir):  # as the script named it
                listed = listed.relative_to(task.job_dir)
            raise CommandFailed(
                f"The script {script} listed {listed.as_posix()} in FLAMENCO_OUTPUTS, "
                "but there is no such file.",
                Fault.FILE,
            )
        report.log(f"{script} made {len(outputs)} file(s)")
        for number, path in enumerate(outputs, 1):
            await report.output(path)
            report.progress(number / len(outputs), f"sent {path.name}")


COMMAND = BlenderScript()
