"""A service that follows its own settings section: it serves while the section is enabled and
starts again with the new settings when the section changes (nothing else restarts)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import trio


class Switchable(Protocol):
    @property
    def enabled(self) -> bool: ...


S = TypeVar("S", bound=Switchable)


class SettingsFollower:
    def __init__(self) -> None:
        self._changed = trio.Event()

    def changed(self) -> None:
        """The section changed: serve again with the new settings."""
        self._changed.set()

    async def run(
        self,
        settings: Callable[[], S],
        serve: Callable[[S, Any], Awaitable[None]],
        task_status: Any,
        idle: Callable[[], None] = lambda: None,
    ) -> None:
        """``serve(settings, task_status)`` while enabled (``idle()`` while not); ready once
        the first settings are served or found disabled."""
        while True:
            self._changed = trio.Event()
            current = settings()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._cancel_when_changed, nursery.cancel_scope)
                if current.enabled:
                    await serve(current, task_status)
                else:
                    idle()
                    task_status.started()
                    await trio.sleep_forever()
                nursery.cancel_scope.cancel()
            task_status = trio.TASK_STATUS_IGNORED

    async def _cancel_when_changed(self, scope: trio.CancelScope) -> None:
        await self._changed.wait()
        scope.cancel()
