"""The DLMS/COSEM object model and OBIS mapping without a socket: channels and groups up to 512
meters, the order of a meter's values, the medium's own codes, the A-XDR of a value; and the
check of the LLS password setting."""

from __future__ import annotations

import contextlib
import struct
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from dlms_cosem.cosem import CosemAttribute, Obis
from dlms_cosem.enumerations import CosemInterface, DataAccessResult
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.protocol.acse.user_information import UserInformation
from hypothesis import given, settings
from hypothesis import strategies as st

from mbusgw.core.units import Function, Quantity, Unit
from mbusgw.gateway.dlms_settings import DlmsSettings
from mbusgw.gateway.meters import AddressingMode, Meter
from mbusgw.gateway.modbus_encoding import Number
from mbusgw.gateway.services.dlms import obis
from mbusgw.gateway.services.dlms.association import PUBLIC_CLIENT, Association, Garbage
from mbusgw.gateway.services.dlms.objects import (
    ClassId,
    CosemModel,
    Identity,
    object_list_data,
    register_value,
)
from mbusgw.gateway.services.modbus_source import (
    MeterIdentity,
    MeterState,
    MeterValues,
    SeriesValue,
)
from mbusgw.gateway.settings import ConfigError, Settings

HEAT = 0x04


def value(quantity: int, mantissa: int, exponent: int = 0, **fields: int) -> SeriesValue:
    return SeriesValue(b"", Number(mantissa, exponent), True, quantity, **fields)


def heat_meter(offset: int) -> MeterValues:
    values = (
        value(Quantity.FABRICATION_NUMBER, 4711),
        value(Quantity.VOLUME, 12_345 + offset, -3, unit=Unit.M3),
        value(Quantity.ENERGY, 9_876 + offset, 3, unit=Unit.WH),
        value(Quantity.ENERGY, 8_000, 3, unit=Unit.WH, storage=1),
        value(Quantity.ENERGY, 1_111, 3, unit=Unit.WH, tariff=1),
        value(Quantity.FLOW_TEMPERATURE, 55, unit=Unit.DEG_C, function=Function.MAXIMUM),
        SeriesValue(b"", Number(1_700_000_000), False, Quantity.TIME_POINT),
    )
    return MeterValues(MeterState.OK, MeterIdentity(id=0x12345600 + offset, medium=HEAT), values)


def model(count: int) -> CosemModel:
    meters = [Meter(f"m{i}", "", None, 2400, (AddressingMode.PRIMARY,)) for i in range(count)]
    readings = {meter.key: heat_meter(i) for i, meter in enumerate(meters)}
    berlin = datetime(2026, 7, 1, 10, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Berlin"))
    return CosemModel(
        lambda: meters, lambda m: readings[m.key], lambda: berlin, lambda: Identity("gw", "1.2")
    )


def test_512_meters_have_a_channel_each_and_the_mapping_goes_both_ways() -> None:
    codes = [obis.channel(i) for i in range(1, 513)]
    assert codes[0] == (1, 255) and codes[63] == (64, 255)
    assert codes[64] == (1, 129) and codes[511] == (64, 135)
    assert len(set(codes)) == 512
    assert [obis.meter_index(b, f) for b, f in codes] == list(range(1, 513))
    assert obis.meter_index(0, 255) is None and obis.meter_index(65, 255) is None
    assert obis.meter_index(1, 128) is None and obis.meter_index(1, 100) is None
    last = obis.channel(obis.MAX_METERS)
    assert last == (64, 254) and obis.meter_index(*last) == obis.MAX_METERS


def test_the_main_register_comes_first_then_the_values_in_record_order() -> None:
    cosem = model(70)
    # meter 66: B = 2, F = 129; E = 1 is its current total energy, not the first record
    main = cosem.get(3, (0, 2, 24, 2, 1, 129), 2)
    assert main == b"\x14" + struct.pack(">q", 9_876 + 65)
    assert cosem.get(3, (0, 2, 24, 2, 1, 129), 3) == bytes((0x02, 2, 0x0F, 3, 0x16, 30))
    second = cosem.get(3, (0, 2, 24, 2, 2, 129), 2)
    assert second == b"\x14" + struct.pack(">q", 4711)  # the fabrication number, record 1
    assert cosem.get(3, (0, 2, 24, 2, 3, 129), 3) == bytes((0x02, 2, 0x0F, 0xFD, 0x16, 13))
    # six numbers; the date has no Register
    assert cosem.get(3, (0, 2, 24, 2, 6, 129), 2) == b"\x14" + struct.pack(">q", 55)
    assert cosem.get(3, (0, 2, 24, 2, 7, 129), 2) == DataAccessResult.OBJECT_UNDEFINED
    assert cosem.get(1, (0, 2, 96, 1, 0, 129), 2) == b"\x0a\x0812345641"
    # a meter index beyond the list, and the logical name of a meter's register
    assert cosem.get(3, (0, 7, 24, 2, 1, 130), 2) == DataAccessResult.OBJECT_UNDEFINED
    assert cosem.get(3, (0, 2, 24, 2, 1, 129), 1) == bytes((0x09, 6, 0, 2, 24, 2, 1, 129))


def test_the_heat_codes_name_the_current_energy_and_volume_per_tariff() -> None:
    cosem = model(1)
    assert cosem.get(3, (6, 1, 1, 0, 0, 255), 2) == b"\x14" + struct.pack(">q", 9_876)
    assert cosem.get(3, (6, 1, 1, 0, 1, 255), 2) == b"\x14" + struct.pack(">q", 1_111)
    assert cosem.get(3, (6, 1, 2, 0, 0, 255), 2) == b"\x14" + struct.pack(">q", 12_345)
    # no volume in tariff 1; and a water code on a heat meter
    assert cosem.get(3, (6, 1, 2, 0, 1, 255), 2) == DataAccessResult.OBJECT_UNDEFINED
    assert cosem.get(3, (8, 1, 1, 0, 0, 255), 2) == DataAccessResult.OBJECT_UNDEFINED
    assert cosem.get(1, (6, 1, 1, 0, 0, 255), 2) == DataAccessResult.OBJECT_CLASS_INCONSISTENT


def test_the_clock_tells_local_time_and_its_deviation() -> None:
    cosem = model(0)
    time = cosem.get(8, obis.CLOCK, 2)
    assert isinstance(time, bytes) and time[:2] == b"\x09\x0c"
    # 2026-07-01 12:00 in Berlin, summer time: deviation -120 (local to UTC), status bit 7
    assert time[2:9] == bytes((0x07, 0xEA, 7, 1, 0xFF, 12, 0))
    assert time[11:] == struct.pack(">h", -120) + b"\x80"
    assert cosem.get(8, obis.CLOCK, 3) == b"\x10" + struct.pack(">h", -120)
    assert cosem.get(8, obis.CLOCK, 4) == b"\x11\x80"
    assert cosem.get(8, obis.CLOCK, 9) == DataAccessResult.READ_WRITE_DENIED
    assert cosem.get(8, obis.CLOCK, 10) == DataAccessResult.OBJECT_UNDEFINED
    assert cosem.get(1, obis.LOGICAL_DEVICE_NAME, 2) == b"\x09\x02gw"
    assert cosem.get(1, obis.FIRMWARE_VERSION, 2) == b"\x0a\x031.2"


def test_a_value_is_exact_a_real_stays_real_and_an_invalid_one_is_null() -> None:
    assert register_value(value(Quantity.VOLUME, -5, -2)) == (-2, b"\x14" + struct.pack(">q", -5))
    real = SeriesValue(b"", Number(exponent=-1, real=21.5), True, Quantity.FLOW_TEMPERATURE)
    assert register_value(real) == (-1, b"\x18" + struct.pack(">d", 21.5))
    assert register_value(SeriesValue(b"", None)) == (0, b"\x00")
    huge = value(Quantity.ENERGY, 3, 200)  # beyond an integer scaler: a float, scaler 0
    assert register_value(huge) == (0, b"\x18" + struct.pack(">d", 3e200))


def test_a_bad_lls_password_is_refused_with_a_reason_and_changes_nothing() -> None:
    settings = Settings()
    for bad, reason in (("pässword", "printable ASCII"), ("x" * 33, "at most 32")):
        with pytest.raises(ConfigError) as caught:
            settings.updated({"dlms": {"lls_password": bad}})
        assert reason in str(caught.value)
    assert settings.dlms.lls_password == ""
    assert settings.updated({"dlms": {"lls_password": "Good-1"}}).dlms.lls_password == "Good-1"


def association(max_pdu: int, block_transfer: bool = True) -> tuple[Association, bytes]:
    """An association of the public client over ``model(3)``, made by a dlms-cosem AARQ; and
    the AARE."""
    proposed = xdlms.Conformance(get=True, block_transfer_with_get_or_read=block_transfer)
    initiate = xdlms.InitiateRequest(proposed, client_max_receive_pdu_size=max_pdu)
    aarq = acse.ApplicationAssociationRequest(user_information=UserInformation(initiate))
    associated = Association(model(3), PUBLIC_CLIENT, DlmsSettings())
    return associated, associated.answer(aarq.to_bytes())


OBJECT_LIST = xdlms.GetRequestNormal(
    CosemAttribute(CosemInterface.ASSOCIATION_LN, Obis(0, 0, 40, 0, 0), 2)
).to_bytes()


def test_a_long_answer_comes_in_blocks_the_client_asks_for_in_turn() -> None:
    client, aare = association(max_pdu=128)
    assert acse.ApplicationAssociationResponse.from_bytes(aare).result == 0
    whole = object_list_data(
        [(ClassId.ASSOCIATION_LN, obis.ASSOCIATION), *client.model.object_list()]
    )
    first = xdlms.GetResponseWithBlock.from_bytes(client.answer(OBJECT_LIST))
    assert first.block_number == 1 and len(first.to_bytes()) <= 128
    blocks = [first.data]
    while True:
        answer = client.answer(xdlms.GetRequestNext(block_number=len(blocks)).to_bytes())
        if answer[3] == 1:  # the last block
            blocks.append(xdlms.GetResponseLastBlock.from_bytes(answer).data)
            break
        blocks.append(xdlms.GetResponseWithBlock.from_bytes(answer).data)
    assert b"".join(blocks) == whole and len(blocks) > 3
    # 3 meters: 6 registers, an identification and 3 heat codes each (energy in tariffs 0 and
    # 1, volume); the gateway's 4 objects and the association itself
    assert whole[:2] == bytes((1, 1 + 4 + 3 * (6 + 1 + 3)))

    # a block asked for out of turn ends the long get; then there is none to continue
    client.answer(OBJECT_LIST)
    wrong = client.answer(xdlms.GetRequestNext(block_number=5).to_bytes())
    assert xdlms.GetResponseLastBlockWithError.from_bytes(wrong).error == 19
    none = client.answer(xdlms.GetRequestNext(block_number=1).to_bytes())
    assert xdlms.GetResponseNormalWithError.from_bytes(none).error == 16


def test_without_block_transfer_a_long_answer_is_an_error() -> None:
    client, _ = association(max_pdu=128, block_transfer=False)
    answer = client.answer(OBJECT_LIST)
    assert xdlms.GetResponseNormalWithError.from_bytes(answer).error == 250


def test_short_names_and_ciphering_are_refused_with_their_diagnostic() -> None:
    proposed = xdlms.Conformance(get=True)
    aarq = acse.ApplicationAssociationRequest(
        user_information=UserInformation(xdlms.InitiateRequest(proposed))
    ).to_bytes()
    logical_names = b"\x60\x85\x74\x05\x08\x01\x01"
    for context in (2, 3, 4):  # short names; logical names ciphered; short names ciphered
        client = Association(model(1), PUBLIC_CLIENT, DlmsSettings())
        other = aarq.replace(logical_names, logical_names[:-1] + bytes((context,)))
        aare = acse.ApplicationAssociationResponse.from_bytes(client.answer(other))
        assert (aare.result, aare.result_source_diagnostics) == (1, 2) and not client.associated


def test_selective_access_is_not_offered() -> None:
    client, _ = association(max_pdu=1024)
    # attribute 2 of 0-1:24.2.1.255 with selector 2 (entry): entries 1 to 0, columns 1 to 0
    selected = bytes.fromhex(
        "c001c1 0003 0001180201ff 02 01 02 0204 0600000001 0600000000 120001 120000"
    )
    assert xdlms.GetResponseNormalWithError.from_bytes(client.answer(selected)).error == 250


VALID_APDUS = (
    acse.ApplicationAssociationRequest(
        user_information=UserInformation(xdlms.InitiateRequest(xdlms.Conformance(get=True)))
    ).to_bytes(),
    OBJECT_LIST,
    xdlms.GetRequestNext(block_number=1).to_bytes(),
    acse.ReleaseRequest().to_bytes(),
)


@st.composite
def damaged_apdus(draw: st.DrawFn) -> bytes:
    """A valid APDU with bytes changed, cut off or put in."""
    apdu = bytearray(draw(st.sampled_from(VALID_APDUS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(apdu)))
        change = draw(st.sampled_from(("set", "cut", "insert")))
        if change == "set" and at < len(apdu):
            apdu[at] = draw(st.integers(0, 255))
        elif change == "cut":
            del apdu[at:]
        else:
            apdu.insert(at, draw(st.integers(0, 255)))
    return bytes(apdu)


@pytest.mark.property
@settings(max_examples=400, deadline=None)
@given(apdu=st.one_of(damaged_apdus(), st.binary(max_size=40)))
def test_any_bytes_get_an_answer_or_close_the_connection(apdu: bytes) -> None:
    """Hostile or broken input raises nothing but ``Garbage`` (the connection closes)."""
    client, _ = association(max_pdu=1024)
    with contextlib.suppress(Garbage):
        assert isinstance(client.answer(apdu), bytes)
