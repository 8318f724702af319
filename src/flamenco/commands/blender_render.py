"""`blender-render`: a task's frames rendered in the job's warm Blender, each sent as a frame
as soon as Blender saved it.

Parameters (core/compiler.py): blend, output_pattern, output_format, render_device, scripts,
persistent_data, check_blank (read by the Worker's frame check) and, for one tile of a frame,
tile (core/tiles.py).
"""

from __future__ import annotations

from flamenco.commands import CommandFailed, CommandTask, RenderedFrame, Reporter
from flamenco.core.faults import Fault
from flamenco.core.tiles import TileError, tile_border


class BlenderRender:
    name = "blender-render"

    async def run(self, task: CommandTask, report: Reporter) -> None:
        params = task.parameters
        ready = await task.blender.open(
            task.job_file(str(params["blend"])),
            device=str(params.get("render_device", "CPU")).upper(),
            scripts=bool(params.get("scripts", True)),
        )
        report.log(f"Flamenco: rendering with Blender {ready.version} ({ready.where})")
        try:
            # The region of a tile task, from the frame size its Blender reports; every
            # Worker reports the same size, so a count that does not fit is the file's.
            border = tile_border(params, ready.resolution)
        except TileError as exc:
            raise CommandFailed(str(exc), Fault.FILE) from None
        total = max(len(task.frames), 1)
        done = 0

        def on_progress(frame: int, sample: int, samples: int) -> None:
            fraction = (done + sample / samples) / total
            report.progress(fraction, f"frame {frame}: sample {sample}/{samples}")

        async def on_frame(saved: RenderedFrame) -> None:
            nonlocal done
            # The Worker counts the frame and reports the task's progress with it.
            await report.output(
                saved.path, saved.frame, size=saved.size, file_format=saved.file_format
            )
            done += 1

        await task.blender.render(
            task.frames,
            task.out_dir,
            output_pattern=str(params.get("output_pattern", "frame_######")),
            output_format=str(params.get("output_format", "SCENE")),
            persistent_data=bool(params.get("persistent_data", True)),
            border=border,
            on_progress=on_progress,
            on_frame=on_frame,
        )


COMMAND = BlenderRender()
