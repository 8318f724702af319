"""A long poll whose wait ends (its request went away, or its time ran out) in the same moment
as new work arrives does not swallow the wake-up: the next Worker in line gets it, and nothing
is left promised to a poll that is gone."""

from __future__ import annotations

import asyncio
from pathlib import Path

from flamenco.config import ManagerSettings
from flamenco.manager.app import build_manager


def test_a_wake_up_skips_a_poll_that_just_ended_and_goes_to_the_next(tmp_path: Path) -> None:
    settings = ManagerSettings(data_dir=tmp_path, server="http://127.0.0.1:9")

    async def main() -> None:
        service = build_manager(settings).service
        try:
            gone = asyncio.create_task(service.waiters.wait(5))
            next_in_line = asyncio.create_task(service.waiters.wait(5))
            timed_out = asyncio.create_task(service.waiters.wait(0.01))
            await asyncio.sleep(0.05)  # all three wait; the third's time runs out
            gone.cancel()  # its request went away: it has not resumed yet when work comes
            service.waiters.notify(1)
            assert await next_in_line is True
            assert await timed_out is False
            assert gone.cancelled() or gone.exception() is None
            await asyncio.gather(gone, return_exceptions=True)
            assert service.waiters.promised == 0 and service.waiters.waiting == 0
        finally:
            service.store.close()
            service.outbox.close()
            await service.server.close()

    asyncio.run(main())
