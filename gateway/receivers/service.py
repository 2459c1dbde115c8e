"""Runs the wireless receivers: one task per receiver with a watchdog, duplicate suppression,
the best receiver per meter, and the decoder.

* **Watchdog.** A receiver that delivers no telegram for ``silence_timeout`` seconds is closed,
  reopened and reset (its ``open`` resets and reconfigures the device); a receiver whose line
  fails is reopened after ``retry_delay``. Both are system-log events (logger
  ``mbusgw.receivers``).
* **Duplicates.** The same telegram heard again within ``dedupe_window`` seconds (a repeat, or a
  second receiver) is decoded once.
* **Best receiver.** For every meter the RSSI each receiver last heard it with, and when, is
  kept (including for suppressed copies), so the receiver that hears a meter best — now, not
  an hour ago — is known ("re-install").

Time for timeouts and windows is trio's clock; ``received_at`` stamps (in the decoder's
diagnosis) come from the wall ``clock``. The service fits the supervisor: it has a ``name`` and
``run(task_status=...)``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import trio

from mbusgw.core.errors import MBusError
from mbusgw.core.wireless_decoder import WirelessDecoder
from mbusgw.core.wmbus import MeterId, meter_from_dll, strip_crc
from mbusgw.gateway.clock import SystemClock, WallClock
from mbusgw.gateway.receivers.base import RadioFrame, Receiver, ReceiverError

log = logging.getLogger("mbusgw.receivers")

TelegramHandler = Callable[[object, RadioFrame], None]
ErrorHandler = Callable[[MBusError, RadioFrame], None]
LINE_ERRORS = (OSError, ReceiverError, trio.BrokenResourceError, trio.ClosedResourceError)


@dataclass
class ReceiverState:
    """What a receiver is doing, for the status pages."""

    kind: str
    state: str = "starting"  # starting | opening | listening | failed | finished
    frames: int = 0
    last_frame: datetime | None = None
    last_error: str | None = None

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "state": self.state,
            "frames": self.frames,
            "last_frame": self.last_frame.isoformat() if self.last_frame else None,
            "last_error": self.last_error,
        }


class WirelessService:
    def __init__(
        self,
        receivers: list[Receiver],
        decoder: WirelessDecoder,
        on_telegram: TelegramHandler | None = None,
        *,
        silence_timeout: float = 600.0,
        retry_delay: float = 10.0,
        dedupe_window: float = 10.0,
        clock: WallClock | None = None,
        max_recent: int = 4096,
        name: str = "wireless",
        on_error: ErrorHandler | None = None,
    ) -> None:
        names = [receiver.name for receiver in receivers]
        if len(set(names)) != len(names):
            raise ValueError(f"receiver names must be unique: {names}")
        self.receivers = receivers
        self.decoder = decoder
        self.on_telegram = on_telegram
        self.on_error = on_error
        self.silence_timeout = silence_timeout
        self.retry_delay = retry_delay
        self.dedupe_window = dedupe_window
        self.clock = clock or SystemClock()
        self.max_recent = max_recent
        self.name = name
        self._recent: OrderedDict[bytes, float] = OrderedDict()
        self._rssi: OrderedDict[MeterId, dict[str, tuple[float, float]]] = OrderedDict()
        self.stats = {"frames": 0, "duplicates": 0, "decoded": 0, "failed": 0, "reopened": 0}
        self.receiver_state = {r.name: ReceiverState(r.kind) for r in receivers}

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for receiver in self.receivers:
                nursery.start_soon(self.run_receiver, receiver)
            task_status.started()

    # ---------------------------------------------------------------- one receiver

    async def run_receiver(self, receiver: Receiver) -> None:
        """Keep one receiver open and feed its frames in, reopening it when needed."""
        state = self.receiver_state[receiver.name]
        while True:
            try:
                state.state = "opening"
                await receiver.open()
                state.state = "listening"
                log.info(
                    "receiver %s (%s) listening in %s",
                    receiver.name,
                    receiver.kind,
                    receiver.link_mode,
                )
                await self._receive_until_silent(receiver)
                self.stats["reopened"] += 1
                log.warning(
                    "receiver %s heard nothing for %g s: reopening and resetting it",
                    receiver.name,
                    self.silence_timeout,
                )
            except LINE_ERRORS as error:
                state.last_error = str(error)
                if not receiver.restartable:
                    state.state = "finished"
                    log.info("receiver %s finished: %s", receiver.name, error)
                    return
                state.state = "failed"
                self.stats["reopened"] += 1
                log.error(
                    "receiver %s failed (%s); reopening in %g s",
                    receiver.name,
                    error,
                    self.retry_delay,
                )
                await receiver.aclose()
                await trio.sleep(self.retry_delay)
            finally:
                with trio.CancelScope(shield=True):
                    await receiver.aclose()

    async def _receive_until_silent(self, receiver: Receiver) -> None:
        deadline = trio.current_time() + self.silence_timeout
        while True:
            with trio.move_on_at(deadline):
                frames = await receiver.receive()
                if frames:
                    deadline = trio.current_time() + self.silence_timeout
                for frame in frames:
                    self.handle(frame)
                continue
            return

    # ---------------------------------------------------------------- frames

    def handle(self, frame: RadioFrame):
        """Account for one frame and decode it unless it is a duplicate; returns the decoded
        telegram, or None (duplicate or failure: the decoder's diagnosis has the reason)."""
        self.stats["frames"] += 1
        state = self.receiver_state.get(frame.receiver)
        if state is not None:
            state.frames += 1
            state.last_frame = self.clock.now()
        try:
            canonical, _, _ = strip_crc(frame.data, frame.frame_format)
            meter = meter_from_dll(canonical)
        except MBusError:
            canonical, meter = frame.data, None
        if meter is not None and frame.rssi is not None:
            self._rssi.setdefault(meter, {})[frame.receiver] = (frame.rssi, trio.current_time())
            self._rssi.move_to_end(meter)
            if len(self._rssi) > self.decoder.max_meters:
                self._rssi.popitem(last=False)
        if self._is_duplicate(canonical):
            self.stats["duplicates"] += 1
            return None
        try:
            telegram = self.decoder.decode(
                frame.data, rssi=frame.rssi, received_at=self.clock.now()
            )
        except MBusError as error:
            self.stats["failed"] += 1
            log.debug("telegram from receiver %s not decoded: %s", frame.receiver, error)
            if self.on_error is not None:
                self.on_error(error, frame)
            return None
        self.stats["decoded"] += 1
        if self.on_telegram is not None:
            self.on_telegram(telegram, frame)
        return telegram

    def _is_duplicate(self, canonical: bytes) -> bool:
        now = trio.current_time()
        while self._recent:
            oldest, seen = next(iter(self._recent.items()))
            if now - seen <= self.dedupe_window and len(self._recent) <= self.max_recent:
                break
            del self._recent[oldest]
        if canonical in self._recent:
            return True
        self._recent[canonical] = now
        return False

    # ---------------------------------------------------------------- best receiver

    def heard_meters(self) -> list[MeterId]:
        """Every meter some receiver has heard with a signal level (most recent last)."""
        return list(self._rssi)

    def rssi_by_receiver(self, meter: MeterId, within: float | None = None) -> dict[str, float]:
        """The level each receiver last heard ``meter`` with (dBm); with ``within``, only
        receivers that heard it in the last ``within`` seconds."""
        now = trio.current_time()
        return {
            name: rssi
            for name, (rssi, at) in self._rssi.get(meter, {}).items()
            if within is None or now - at <= within
        }

    def best_receiver(self, meter: MeterId, within: float | None = None) -> str | None:
        """The receiver that last heard ``meter`` with the strongest signal (with ``within``:
        among those that heard it in the last ``within`` seconds)."""
        heard = self.rssi_by_receiver(meter, within)
        if not heard:
            return None
        return max(heard.items(), key=lambda item: item[1])[0]

    def reinstall(self, meter: MeterId | None = None) -> None:
        """Forget what was heard, so the best receiver is resolved again."""
        if meter is None:
            self._rssi.clear()
        else:
            self._rssi.pop(meter, None)
