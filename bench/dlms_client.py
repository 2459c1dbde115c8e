"""An independent DLMS/COSEM client for the bench and the tests: Gurux's (``gurux-dlms``, GPL,
a test and bench dependency only) over a blocking TCP socket with the wrapper. Its calls
block: a trio test runs them in a worker thread."""

from __future__ import annotations

import socket
from typing import Any

from gurux_dlms import GXByteBuffer, GXDLMSClient, GXDLMSException, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType, ObjectType
from gurux_dlms.objects import GXDLMSClock, GXDLMSData, GXDLMSRegister

PUBLIC, LLS = 16, 17
RECEIVE_TIMEOUT_S = 10.0

__all__ = ["DlmsClient", "GXDLMSException", "ObjectType"]


class DlmsClient:
    def __init__(
        self,
        port: int,
        client_sap: int = PUBLIC,
        password: str | None = None,
        max_pdu: int | None = None,
    ) -> None:
        mechanism = Authentication.LOW if password is not None else Authentication.NONE
        self.client = GXDLMSClient(True, client_sap, 1, mechanism, password, InterfaceType.WRAPPER)
        if max_pdu is not None:  # the largest APDU it takes: a longer answer comes in blocks
            self.client.setMaxReceivePDUSize(max_pdu)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=RECEIVE_TIMEOUT_S)

    def close(self) -> None:
        self.sock.close()

    def _exchange(self, packets: Any) -> GXReplyData:
        """Send each packet and take its answer; a long answer's blocks are asked for."""
        reply = GXReplyData()
        for packet in packets if isinstance(packets, list) else [packets]:
            reply = GXReplyData()
            self._answer(packet, reply)
            while reply.isMoreData():
                self._answer(self.client.receiverReady(reply), reply)
        return reply

    def _answer(self, packet: Any, reply: GXReplyData) -> None:
        self.sock.sendall(bytes(packet))
        buffer = GXByteBuffer()
        while not self.client.getData(buffer, reply, None):
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            buffer.set(data)
        if reply.error:  # a data-access-result other than success
            raise GXDLMSException(reply.error)

    def object_list_data(self) -> Any:
        """The association's object list (attribute 2 of 0-0:40.0.0.255) as it came."""
        return self._exchange(self.client.getObjectsRequest()).data

    def objects(self) -> Any:
        """The object list as Gurux parses it (slow: about 2 ms an object)."""
        return self.client.parseObjects(self.object_list_data(), False)

    def associate(self) -> None:
        """The AARQ; GXDLMSException (with the AARE's diagnostic) when it is refused."""
        reply = self._exchange(self.client.aarqRequest())
        self.client.parseAareResponse(reply.data)

    def release(self) -> None:
        self._exchange(self.client.releaseRequest())

    def read(self, target: Any, attribute: int) -> Any:
        """An attribute's value as Gurux decodes it; GXDLMSException carries an error's
        data-access-result."""
        reply = self._exchange(self.client.read(target, attribute))
        return self.client.updateValue(target, attribute, reply.value)

    def register(self, obis: str) -> GXDLMSRegister:
        """A Register with its scaler and unit (attribute 3) and then its value (2), which
        Gurux scales."""
        target = GXDLMSRegister(obis)
        self.read(target, 3)
        self.read(target, 2)
        return target

    def data(self, obis: str) -> Any:
        return self._exchange(self.client.read(GXDLMSData(obis), 2)).value

    def clock(self) -> Any:
        target = GXDLMSClock("0.0.1.0.0.255")
        self.read(target, 2)
        return target.time
