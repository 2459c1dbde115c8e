"""Modbus RTU on a serial slave port (a PLC on RS-485 as the master), over the same map as TCP.

The port is opened at ``rtu_baud_rate``, 8 data bits, even parity, 1 stop bit (the Modbus
serial default, and the M-Bus character format the gateway's serial ports use). pymodbus's
``FramerRTU`` finds the frames (by function code and CRC) and wraps the answers. The gateway
answers its own unit id and the meters' unit ids; frames for other slaves on the bus, with a
bad CRC, or broadcast (unit 0: a read has no broadcast form) get no answer. Bytes followed by
a silence longer than ``SILENCE_S`` that make no frame are dropped, so a garbled frame never
holds up the next request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

from mbusgw.gateway.services.modbus_pdu import Responder
from mbusgw.gateway.settings import ModbusSettings

logger = logging.getLogger("mbusgw.modbus")

SerialOpener = Callable[[str, int], Awaitable[trio.abc.Stream]]
SILENCE_S = 0.05  # far above 3.5 characters at any rate; USB adapters and ptys add jitter
RECEIVE_SIZE = 512


async def serve_rtu(
    responder: Responder, settings: ModbusSettings, stream: trio.abc.Stream
) -> None:
    """Answer the requests that arrive on the open serial port until cancelled (then it is
    closed); a port that fails raises."""
    units = {settings.unit_id, *(m.unit_id for m in settings.meters.values() if m.unit_id)}
    framer = FramerRTU(DecodePDU(is_server=True))
    stats = responder.stats
    logger.info("Modbus RTU slave on %s at %d baud", settings.rtu_device, settings.rtu_baud_rate)
    async with stream:
        buffer = b""
        while True:
            with trio.move_on_after(SILENCE_S if buffer else float("inf")) as silence:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise trio.BrokenResourceError(f"{settings.rtu_device} closed")
            if silence.cancelled_caught:  # a silence ends a frame: what is left is no frame
                stats.rtu_frames_ignored += 1
                buffer = b""
                continue
            buffer += data
            used, unit, _, pdu = framer.decode(buffer)
            if not used:
                continue  # not a whole frame yet
            buffer = buffer[used:]
            if not pdu or unit not in units:
                stats.rtu_frames_ignored += 1  # bad CRC, another slave's, or a broadcast
                continue
            await stream.send_all(framer.encode(responder.answer(unit, pdu), unit, 0))
