"""Simulated receivers that speak the real bytes, for tests and demonstrations.

``SimulatedIm871a`` and ``SimulatedAmb8465`` serve the device side of a trio stream (the master
side of a pty, so the receiver under test opens a real serial device path): they answer the
configuration requests as the sticks do and send telegrams with RSSI when told to. They can also
fall silent, to exercise the watchdog.
"""

from __future__ import annotations

import abc
import os
import tty

import trio

from mbusgw.gateway.receivers import amb8465, im871a


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
        await self.stream.send_all(
            im871a.build_frame(request.endpoint, request.message_id + 1, answer)
        )

    async def transmit(self, telegram: bytes, rssi_raw: int = 180) -> None:
        """A telegram heard over the air (CRC-free, L-field first)."""
        if not self.silent:
            await self.stream.send_all(
                im871a.build_frame(
                    im871a.RADIOLINK, im871a.WMBUSMSG_IND, telegram[1:], rssi=rssi_raw
                )
            )


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
        await self.stream.send_all(amb8465.command(request.command | amb8465.CONFIRM, answer))

    async def transmit(self, telegram: bytes, rssi_raw: int = 0xF0) -> None:
        """A telegram heard over the air (CRC-free, L-field first)."""
        if self.silent:
            return
        tail = bytes((rssi_raw,)) if self.rssi_enabled else b""
        if self.command_output:
            body = bytes((amb8465.START, amb8465.DATA_IND, len(telegram) - 1)) + telegram[1:]
            body += tail
            await self.stream.send_all(body + bytes((amb8465.checksum(body),)))
        else:
            await self.stream.send_all(telegram + tail)
