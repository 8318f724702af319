"""All files of a job as one zip, streamed while it is read from the Server.

Nothing is staged on disk or held whole in memory: each file goes from the Server's response
into the zip entry and on to the browser in pieces. Frames are already compressed images, so
the entries are stored, not deflated; sizes and checksums follow each entry (a data
descriptor), as a zip written to a stream must.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from flamenco.client import ApiError, Unreachable

FLUSH_BYTES = 256 * 1024


class _Sink:
    """A write-only file for ZipFile; what was written is taken out piece by piece."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts, self.size = [], 0
        return data


async def stream_zip(
    files: list[tuple[str, str]], open_stream: Callable[[str], Awaitable[httpx.Response]]
) -> AsyncIterator[bytes]:
    """Zip bytes of `files` (name in the zip, Server path), fetched one after the other.

    A file the Server no longer has is left out and named in `MISSING.txt` at the end.
    """
    sink = _Sink()
    missing: list[str] = []
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, path in files:
            try:
                response = await open_stream(path)
            except (ApiError, Unreachable) as exc:
                missing.append(f"{name}: {exc}")
                continue
            try:
                info = zipfile.ZipInfo(name, date_time=stamp)
                with archive.open(info, "w", force_zip64=True) as entry:
                    async for chunk in response.aiter_bytes():
                        entry.write(chunk)
                        if sink.size >= FLUSH_BYTES:
                            yield sink.take()
            finally:
                await response.aclose()
            yield sink.take()
        if missing:
            archive.writestr(zipfile.ZipInfo("MISSING.txt", date_time=stamp), "\n".join(missing))
    yield sink.take()
