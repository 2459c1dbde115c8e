"""One client's application association, sans I/O: an APDU in, the APDU to answer out.

dlms-cosem parses and encodes the AARQ/AARE, the GET request and response forms, the RLRQ/RLRE
and the exception response; what is ours is the server's side of them: which client may
associate and how, the negotiated context, and the dispatch of a GET to the object model.

Two associations are offered, each bound to its client SAP (the wrapper's source port):
the public client (16) without security, and client 17 with low-level security (LLS, the
password in the AARQ's calling-authentication-value). Logical-name referencing only, no
ciphering. An APDU that cannot be parsed is ``Garbage``: the connection is closed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dlms_cosem import enumerations as enums
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.protocol.acse.user_information import UserInformation

from mbusgw.gateway.dlms_settings import DlmsSettings
from mbusgw.gateway.services.dlms.objects import CosemModel

PUBLIC_CLIENT = 16
LLS_CLIENT = 17
MAX_RECEIVE_PDU = 1024  # ours: an AARQ or a GET request is far smaller
AARQ, RLRQ, GET_REQUEST, GET_RESPONSE = 0x60, 0x62, 0xC0, 0xC4
NOT_SUPPORTED = {0xC1, 0xC3}  # SET and ACTION requests: answered, not served
# the application context names of short-name referencing, without and with ciphering
SHORT_NAME_CONTEXTS = (b"\x60\x85\x74\x05\x08\x01\x02", b"\x60\x85\x74\x05\x08\x01\x04")
OFFERED = xdlms.Conformance(get=True, block_transfer_with_get_or_read=True)
MAX_APDU = 65_000  # what the wrapper's 16-bit length carries, with room for the head
MIN_PDU = 64  # a smaller max-receive-PDU-size is taken as this (room for a block's data)
BLOCK_HEAD = 13  # a data block's head: tag, choice, invoke-id, last, number, choice, length
WRONG_PASSWORD = "wrong password"

Diagnostic = enums.AcseServiceUserDiagnostics
T = TypeVar("T")


class Garbage(ValueError):
    """Bytes that are no APDU this server understands: the connection ends."""


@dataclass(frozen=True)
class Outcome:
    """What an AARQ came to, for the log and the counters (never the password)."""

    accepted: bool
    reason: str
    wrong_password: bool = False  # counts toward the login limiting


@dataclass
class LongGet:
    """A GET answered in blocks: its data, how much of it is sent, the last block's number."""

    data: bytes
    invoke: xdlms.InvokeIdAndPriority
    block_size: int
    sent: int = 0
    block: int = 0


class Association:
    def __init__(self, model: CosemModel, client_sap: int, settings: DlmsSettings) -> None:
        self.model = model
        self.client_sap = client_sap
        self.settings = settings
        self.associated = False
        self.conformance = xdlms.Conformance()
        self.client_max_pdu = MAX_APDU  # the client's max-receive-PDU-size, once it said
        self.long_get: LongGet | None = None  # a GET answered in blocks, not finished
        self.last_outcome: Outcome | None = None  # of the latest AARQ

    def answer(self, apdu: bytes) -> bytes:
        """The answer to one APDU; ``Garbage`` when it is none the server understands."""
        if not apdu:
            raise Garbage("an empty APDU")
        tag = apdu[0]
        if tag == AARQ:
            return self._associate(apdu)
        if tag == RLRQ:
            _parsed(acse.ReleaseRequest.from_bytes, apdu)
            self.associated = False
            return acse.ReleaseResponse(reason=enums.ReleaseResponseReason.NORMAL).to_bytes()
        if tag == GET_REQUEST:
            return self._get(apdu)
        if tag in NOT_SUPPORTED:
            return _not_supported()
        raise Garbage(f"APDU 0x{tag:02X} is not served")

    # ----------------------------------------------------------------- association

    def _associate(self, apdu: bytes) -> bytes:
        if any(context in apdu[:16] for context in SHORT_NAME_CONTEXTS):
            return self._refuse(
                Diagnostic.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED, "short-name referencing"
            )
        request = _parsed(acse.ApplicationAssociationRequest.from_bytes, apdu)
        initiate = request.user_information.content
        if request.ciphered or not isinstance(initiate, xdlms.InitiateRequest):
            return self._refuse(Diagnostic.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED, "ciphering")
        refusal = self._check_authentication(request)
        if refusal is not None:
            return self._refuse(*refusal)
        proposed = initiate.proposed_conformance
        self.conformance = xdlms.Conformance(
            get=proposed.get and OFFERED.get,
            block_transfer_with_get_or_read=proposed.block_transfer_with_get_or_read
            and OFFERED.block_transfer_with_get_or_read,
        )
        size = initiate.client_max_receive_pdu_size or MAX_APDU  # 0: no limit of its own
        self.client_max_pdu = min(max(size, MIN_PDU), MAX_APDU)
        self.long_get = None
        self.associated = True
        lls = self.client_sap == LLS_CLIENT
        self.last_outcome = Outcome(True, "low-level security" if lls else "no security")
        return acse.ApplicationAssociationResponse(
            result=enums.AssociationResult.ACCEPTED,
            result_source_diagnostics=Diagnostic.NULL,
            authentication=enums.AuthenticationMechanism.LLS if lls else None,
            user_information=UserInformation(
                xdlms.InitiateResponse(
                    negotiated_conformance=self.conformance,
                    server_max_receive_pdu_size=MAX_RECEIVE_PDU,
                )
            ),
        ).to_bytes()

    def _check_authentication(
        self, request: acse.ApplicationAssociationRequest
    ) -> tuple[Diagnostic, str] | None:
        mechanism = request.authentication or enums.AuthenticationMechanism.NONE
        if self.client_sap == PUBLIC_CLIENT:
            if not self.settings.public_client:
                return Diagnostic.NO_REASON_GIVEN, "the public client is switched off"
            if mechanism != enums.AuthenticationMechanism.NONE:
                return (
                    Diagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNIZED,
                    "the public client associates without security",
                )
            return None
        if self.client_sap != LLS_CLIENT:
            return Diagnostic.NO_REASON_GIVEN, f"no association for client SAP {self.client_sap}"
        if not self.settings.lls_password:
            return Diagnostic.NO_REASON_GIVEN, "no low-level security password is set"
        if mechanism == enums.AuthenticationMechanism.NONE:
            return Diagnostic.AUTHENTICATION_REQUIRED, "no password given"
        if mechanism != enums.AuthenticationMechanism.LLS:
            return (
                Diagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNIZED,
                f"mechanism {mechanism.name} is not offered",
            )
        given = request.authentication_value or b""
        if not hmac.compare_digest(given, self.settings.lls_password.encode()):
            return Diagnostic.AUTHENTICATION_FAILED, WRONG_PASSWORD
        return None

    def refuse_for_now(self, reason: str) -> bytes:
        """The AARE that turns an AARQ away for the time being (rejected-transient), whatever
        it holds: too many wrong passwords came from its address."""
        return self._refuse(Diagnostic.NO_REASON_GIVEN, reason, transient=True)

    def _refuse(self, diagnostic: Diagnostic, reason: str, *, transient: bool = False) -> bytes:
        self.associated = False
        self.last_outcome = Outcome(False, reason, reason == WRONG_PASSWORD)
        result = enums.AssociationResult
        return acse.ApplicationAssociationResponse(
            result=result.REJECTED_TRANSIENT if transient else result.REJECTED_PERMANENT,
            result_source_diagnostics=diagnostic,
        ).to_bytes()

    # ------------------------------------------------------------------------- GET

    def _get(self, apdu: bytes) -> bytes:
        if not self.associated or not self.conformance.get:
            return xdlms.ExceptionResponse(
                enums.StateException.SERVICE_NOT_ALLOWED,
                enums.ServiceException.OPERATION_NOT_POSSIBLE,
            ).to_bytes()
        early = _before_parsing(apdu)
        if early is not None:
            return early
        request = _parsed(xdlms.GetRequestFactory.from_bytes, apdu)
        if isinstance(request, xdlms.GetRequestNext):
            return self._get_next(request)
        if not isinstance(request, xdlms.GetRequestNormal):  # with-list
            return _not_supported()
        self.long_get = None  # a new request ends a long get
        invoke = request.invoke_id_and_priority
        target = request.cosem_attribute
        code = tuple(target.instance.to_bytes())
        class_id, attribute = int(target.interface), int(target.attribute)
        answer = self.model.get(class_id, code, attribute, self.client_sap)  # type: ignore[arg-type]
        if isinstance(answer, bytes):
            return self._data(invoke, answer)
        return xdlms.GetResponseNormalWithError(answer, invoke_id_and_priority=invoke).to_bytes()

    def _data(self, invoke: xdlms.InvokeIdAndPriority, data: bytes) -> bytes:
        """The GET-Response with ``data``: normal when it fits the client's PDU size, else the
        first block of a long get."""
        # dlms-cosem 25.1's GetResponseNormal.to_bytes fails (it appends the invoke-id's bytes
        # as one int), so this four-byte head is written here
        head = bytes((GET_RESPONSE, enums.GetResponseType.NORMAL)) + invoke.to_bytes() + b"\x00"
        if len(head) + len(data) <= self.client_max_pdu:
            return head + data
        if not self.conformance.block_transfer_with_get_or_read:
            return xdlms.GetResponseNormalWithError(
                enums.DataAccessResult.OTHER_REASON, invoke_id_and_priority=invoke
            ).to_bytes()
        self.long_get = LongGet(data, invoke, self.client_max_pdu - BLOCK_HEAD)
        return self._next_block()

    def _next_block(self) -> bytes:
        long_get = self.long_get
        assert long_get is not None
        long_get.block += 1
        chunk = long_get.data[long_get.sent : long_get.sent + long_get.block_size]
        long_get.sent += len(chunk)
        invoke = long_get.invoke
        if long_get.sent < len(long_get.data):
            return xdlms.GetResponseWithBlock(chunk, long_get.block, invoke).to_bytes()
        self.long_get = None
        return xdlms.GetResponseLastBlock(chunk, long_get.block, invoke).to_bytes()

    def _get_next(self, request: xdlms.GetRequestNext) -> bytes:
        long_get, self.long_get = self.long_get, None
        invoke = request.invoke_id_and_priority
        if long_get is None:
            return xdlms.GetResponseNormalWithError(
                enums.DataAccessResult.NO_LONG_GET_IN_PROGRESS, invoke_id_and_priority=invoke
            ).to_bytes()
        if request.block_number != long_get.block:  # the long get ends here
            return xdlms.GetResponseLastBlockWithError(
                enums.DataAccessResult.DATA_BLOCK_NUMBER_INVALID,
                request.block_number,
                invoke,
            ).to_bytes()
        self.long_get = long_get
        return self._next_block()


def _parsed(parse: Callable[[bytes], T], apdu: bytes) -> T:
    """``parse(apdu)``; whatever dlms-cosem raises on bytes it cannot parse (ValueError,
    IndexError, an assertion, a part it does not implement, ...) is ``Garbage``."""
    try:
        return parse(apdu)
    except Exception as exc:
        raise Garbage(f"APDU 0x{apdu[0]:02X} not understood: {exc!r}") from None


def _before_parsing(apdu: bytes) -> bytes | None:
    """The answer to a GET-Request-Normal that dlms-cosem cannot parse: one with selective
    access (it does not decode the descriptors; no object here offers any), and one for a
    class id the standard does not have (no object of it exists here). None for the others."""
    if len(apdu) < 13 or apdu[1] != enums.GetRequestType.NORMAL:
        return None
    error = None
    if apdu[12] != 0:
        error = enums.DataAccessResult.OTHER_REASON
    elif int.from_bytes(apdu[3:5], "big") not in enums.CosemInterface._value2member_map_:
        error = enums.DataAccessResult.OBJECT_UNDEFINED
    if error is None:
        return None
    return xdlms.GetResponseNormalWithError(
        error, invoke_id_and_priority=xdlms.InvokeIdAndPriority.from_bytes(apdu[2:3])
    ).to_bytes()


def _not_supported() -> bytes:
    """The exception response to a request of a service that was not negotiated."""
    return xdlms.ExceptionResponse(
        enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.SERVICE_NOT_SUPPORTED
    ).to_bytes()
