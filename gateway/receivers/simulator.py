"""Simulated receivers that speak the real bytes, for tests and demonstrations.

``SimulatedIm871a`` and ``SimulatedAmb8465`` serve the device side of a trio stream (the master
side of a pty, so the receiver under test opens a real serial device path): they answer the
configuration requests as the sticks do and send telegrams with RSSI when told to. They can also
fall silent, to exercise the watchdog. ``SimulatedRadio`` puts sticks on ptys and lets the
meters of a radio field transmit to them: the gateway's built-in wireless setup.
"""

from __future__ import annotations

import abc
import os
import tty
from typing import Any

import trio

from mbusgw.gateway.receivers import amb8465, im871a
from mbusgw.gateway.simulator.radio import RadioField


class PtyPair:
    """A pseudo-terminal: ``path`` is the device a receiver opens, ``stream`` the far end."""

    def __init__(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave  # kept open so the master never sees a hang-up between opens
        self.stream = trio.lowlevel.FdStream(master)

    async def aclose(self) -> None:
        await self.stream.aclose()
        os.close(self._slave)


class SimulatedStick(abc.ABC):
    """Reads requests with the stick's own codec and answers them until the line closes; a
    ``silent`` stick answers nothing and sends nothing."""

    request_type: type = object

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.resets = 0
        self.silent = False
        self._sending = trio.Lock()  # answers and telegrams share the line

    async def _send(self, data: bytes) -> None:
        async with self._sending:
            await self.stream.send_all(data)

    @abc.abstractmethod
    async def transmit(self, telegram: bytes, rssi_raw: int) -> None: ...

    @staticmethod
    @abc.abstractmethod
    def raw_rssi(dbm: float) -> int:
        """The stick's RSSI byte for a signal of ``dbm``."""

    async def hear(self, telegram: bytes, dbm: float) -> None:
        """A telegram (CRC-free, L-field first) arrives over the air at ``dbm``."""
        await self.transmit(telegram, self.raw_rssi(dbm))

    @abc.abstractmethod
    def _codec(self): ...

    async def serve(self) -> None:
        codec = self._codec()
        while True:
            data = await self.stream.receive_some(4096)
            if not data:
                return
            codec.feed(data)
            for event in codec.events():
                if isinstance(event, self.request_type) and not self.silent:
                    await self._answer(event)

    @abc.abstractmethod
    async def _answer(self, request) -> None: ...


class SimulatedIm871a(SimulatedStick):
    request_type = im871a.HciMessage

    def __init__(self, stream: trio.abc.Stream, *, firmware: int = 0x15) -> None:
        super().__init__(stream)
        self.firmware = firmware
        self.link_mode: int | None = None
        self.requests: list[tuple[int, int, bytes]] = []

    def _codec(self) -> im871a.HciCodec:
        return im871a.HciCodec()

    async def _answer(self, request: im871a.HciMessage) -> None:
        self.requests.append((request.endpoint, request.message_id, request.payload))
        answer = b""
        if request.message_id == im871a.GET_DEVICEINFO_REQ:
            answer = bytes((0x33, 0x00, self.firmware, 0x11)) + (0x12345678).to_bytes(4, "little")
        elif request.message_id == im871a.SET_CONFIG_REQ:
            self.link_mode = request.payload[2] if len(request.payload) > 2 else None
            answer = b"\x00"
        elif request.message_id == im871a.RESET_REQ:
            self.resets += 1
            answer = b"\x00"
        await self._send(im871a.build_frame(request.endpoint, request.message_id + 1, answer))

    async def transmit(self, telegram: bytes, rssi_raw: int = 180) -> None:
        """A telegram heard over the air (CRC-free, L-field first)."""
        if not self.silent:
            await self._send(
                im871a.build_frame(
                    im871a.RADIOLINK, im871a.WMBUSMSG_IND, telegram[1:], rssi=rssi_raw
                )
            )

    @staticmethod
    def raw_rssi(dbm: float) -> int:
        return max(0, min(255, round(45 + (dbm + 100.0) * 2)))


class SimulatedAmb8465(SimulatedStick):
    request_type = amb8465.AmberCommand

    def __init__(self, stream: trio.abc.Stream, *, command_output: bool = True) -> None:
        super().__init__(stream)
        self.command_output = command_output
        self.rssi_enabled = False
        self.mode: int | None = None

    def _codec(self) -> amb8465.AmberCodec:
        return amb8465.AmberCodec(rssi=False)

    async def _answer(self, request: amb8465.AmberCommand) -> None:
        answer = b"\x00"
        if request.command == amb8465.SERIALNO:
            answer = bytes((0x00, 0x00, 0x12, 0x34))
        elif request.command == amb8465.GET:
            position, count = request.payload[0], request.payload[1]
            value = 1 if self.rssi_enabled and position == amb8465.PARAM_RSSI else 0
            answer = bytes((position, count)) + bytes((value,)) * count
        elif request.command == amb8465.SET and request.payload[0] == amb8465.PARAM_RSSI:
            self.rssi_enabled = request.payload[2] == 1
        elif request.command == amb8465.SET_MODE:
            self.mode = request.payload[0]
        elif request.command == amb8465.RESET:
            self.resets += 1
        await self._send(amb8465.command(request.command | amb8465.CONFIRM, answer))

    async def transmit(self, telegram: bytes, rssi_raw: int = 0xF0) -> None:
        """A telegram heard over the air (CRC-free, L-field first)."""
        if self.silent:
            return
        tail = bytes((rssi_raw,)) if self.rssi_enabled else b""
        if self.command_output:
            body = bytes((amb8465.START, amb8465.DATA_IND, len(telegram) - 1)) + telegram[1:]
            body += tail
            await self._send(body + bytes((amb8465.checksum(body),)))
        else:
            await self._send(telegram + tail)

    @staticmethod
    def raw_rssi(dbm: float) -> int:
        return max(-128, min(127, round((dbm + 74.0) * 2))) & 0xFF


STICKS: dict[str, type[SimulatedStick]] = {"im871a": SimulatedIm871a, "amb8465": SimulatedAmb8465}
QUEUED_TELEGRAMS = 32  # per stick; more while its receiver is away are lost, as on the air


class SimulatedRadio:
    """Simulated receivers hearing a radio field (``gateway.simulator.radio``): a pty and a
    simulated stick per receiver, so the gateway opens real serial devices and speaks the
    sticks' protocols. A supervised service; the ptys stay across restarts (``aclose`` at the
    end). Each stick is fed through its own queue, so a stick whose receiver is closed (and
    whose pty fills up) never holds up the others."""

    name = "radio-simulator"

    def __init__(self, field: RadioField, protocols: dict[str, str]) -> None:
        self.field = field
        self.ptys = {name: PtyPair() for name in protocols}
        self.sticks = {
            name: STICKS[protocol](self.ptys[name].stream) for name, protocol in protocols.items()
        }
        self.sent = 0
        self.lost = 0

    def device(self, receiver: str) -> str:
        """The serial device the gateway opens for ``receiver``."""
        return self.ptys[receiver].path

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        queues = {}
        async with trio.open_nursery() as nursery:
            for name, stick in self.sticks.items():
                send, receive = trio.open_memory_channel[tuple[bytes, float]](QUEUED_TELEGRAMS)
                queues[name] = send
                nursery.start_soon(stick.serve)
                nursery.start_soon(self._feed, stick, receive)
            task_status.started()
            await self._transmit(queues)

    @staticmethod
    async def _feed(stick: SimulatedStick, receive: trio.MemoryReceiveChannel) -> None:
        async for telegram, dbm in receive:
            await stick.hear(telegram, dbm)

    async def _transmit(self, queues: dict[str, trio.MemorySendChannel]) -> None:
        start = trio.current_time()
        receivers = list(self.sticks)
        due = {id(meter): meter.phase for meter in self.field.meters}
        while True:
            meter = min(self.field.meters, key=lambda m: due[id(m)])
            t = due[id(meter)]
            await trio.sleep_until(start + t)
            due[id(meter)] = t + meter.interval
            for name, telegram, dbm in self.field.transmit(meter, t, receivers):
                try:
                    queues[name].send_nowait((telegram, dbm))
                    self.sent += 1
                except trio.WouldBlock:
                    self.lost += 1

    async def aclose(self) -> None:
        for pty in self.ptys.values():
            await pty.aclose()
