"""One Modbus request PDU in, its answer PDU out, from the register map; shared by TCP and RTU.

pymodbus is the protocol library here: its ``DecodePDU`` decodes the request (address, count,
and the count check of function 3 and 4), its ``ExceptionResponse`` encodes the exceptions, and
its framers (``FramerSocket``, ``FramerRTU``) cut the byte stream into frames and wrap the
answers. The register data of an answer is copied from the map's image as it is (already
big-endian bytes), rather than turned back into numbers for pymodbus to pack one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymodbus.pdu import DecodePDU, ExceptionResponse

from mbusgw.gateway.services.modbus_map import MAX_READ, ExceptionCode, RegisterMap

READ_FUNCTIONS = (3, 4)
READ_PDU_SIZE = 5  # function, address (2), count (2)


@dataclass
class ModbusStats:
    connections: int = 0  # open now
    accepted: int = 0
    refused: int = 0
    requests: int = 0
    exceptions: int = 0
    closed_bad_frame: int = 0
    closed_idle: int = 0
    rtu_frames_ignored: int = 0  # RTU frames for another unit, or with a bad CRC


class Responder:
    """Answers read requests from the register map (docs/modbus.md, "How requests are
    answered")."""

    def __init__(self, register_map: RegisterMap, stats: ModbusStats) -> None:
        self.register_map = register_map
        self.stats = stats
        self._decoder = DecodePDU(is_server=True)

    def answer(self, unit: int, pdu: bytes) -> bytes:
        """The answer PDU (function code first) to one request PDU."""
        function = pdu[0]
        if function not in READ_FUNCTIONS:
            code = ExceptionCode.ILLEGAL_FUNCTION
        elif len(pdu) != READ_PDU_SIZE or not 1 <= int.from_bytes(pdu[3:5]) <= MAX_READ:
            # checked before decoding: pymodbus would log a warning for each such request
            code = ExceptionCode.ILLEGAL_DATA_VALUE
        elif (request := self._decoder.decode(pdu)) is None:
            code = ExceptionCode.ILLEGAL_DATA_VALUE
        else:
            return self.read(unit, function, request.address, request.count)
        self.stats.requests += 1
        return self._exception(function, code)

    def read(self, unit: int, function: int, address: int, count: int) -> bytes:
        """The answer PDU to a well-formed read: function 3 or 4, 0 <= address < 65 536 and
        1 <= count <= 125 (``answer`` and the TCP fast path have checked that)."""
        self.stats.requests += 1
        result = self.register_map.read_bytes(unit, address, count)
        if isinstance(result, ExceptionCode):
            return self._exception(function, result)
        return bytes((function, len(result))) + result

    def _exception(self, function: int, code: ExceptionCode) -> bytes:
        self.stats.exceptions += 1
        exception = ExceptionResponse(function & 0x7F, int(code))
        return bytes((exception.function_code,)) + exception.encode()
