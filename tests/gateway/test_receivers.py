"""Receivers end to end against simulated sticks: over a pty with real serial I/O, over TCP, and
over memory streams with the mock clock for the watchdog.

Rules for this file: every test that does I/O runs under ``trio.fail_after``; a test that waits
for the watchdog uses ``autojump_clock`` and memory streams, never real sleeps.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial

import pytest
import trio
import trio.testing

from mbusgw.core.wireless_decoder import WirelessDecoder
from mbusgw.core.wmbus import MeterId
from mbusgw.gateway.clock import TrioWallClock
from mbusgw.gateway.receivers import (
    Amb8465Receiver,
    Im871aReceiver,
    RawHexReceiver,
    amb8465,
    im871a,
)
from mbusgw.gateway.receivers.lines import serial_opener, tcp_opener
from mbusgw.gateway.receivers.service import WirelessService
from mbusgw.gateway.receivers.simulator import PtyPair, SimulatedAmb8465, SimulatedIm871a

N21 = bytes.fromhex(
    "2E4493157856341233037A2A0020255923C95AAA26D1B2E7493B013EC4A6F6D3529B520EDFF0EA6DEFC99D6D69EBF3"
)
N21_KEY = "0102030405060708090A0B0C0D0E0F11"
ELS = MeterId("ELS", "12345678", 51, 3)
# A plain telegram of another meter (wmbusmeters "COUNTA").
PLAIN = bytes.fromhex("234433300602010014007A8E0400002F2F0EFD3A1147000000008E40FD3A341200000000")


def collecting_service(receivers, **kwargs):
    got = []
    service = WirelessService(
        receivers,
        WirelessDecoder(keys=N21_KEY),
        lambda telegram, frame: got.append((telegram, frame)),
        **kwargs,
    )
    return service, got


async def wait_for(predicate, step: float = 0.01) -> None:
    while not predicate():
        await trio.sleep(step)


async def test_im871a_over_a_pty() -> None:
    pty = PtyPair()
    stick = SimulatedIm871a(pty.stream)
    receiver = Im871aReceiver("stick", serial_opener(pty.path, 57600), "C1")
    service, got = collecting_service([receiver])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stick.serve)
            nursery.start_soon(service.run)
            await wait_for(lambda: stick.link_mode is not None)
            assert stick.link_mode == im871a.LINK_MODE_CODES["C1"]
            assert stick.resets == 1
            await stick.transmit(N21, rssi_raw=125)
            await stick.transmit(PLAIN, rssi_raw=90)
            await wait_for(lambda: len(got) == 2)
            nursery.cancel_scope.cancel()
    await pty.aclose()
    telegram, frame = got[0]
    assert telegram.meter == ELS
    assert telegram.payload[:2] == b"\x2f\x2f"
    assert frame.rssi == im871a.rssi_dbm(125) == -60.0
    assert frame.frame_format == "stripped"
    assert service.best_receiver(ELS) == "stick"
    assert receiver.device_info[0] == 0x33


@pytest.mark.parametrize("command_output", [True, False])
async def test_amb8465_over_a_pty_switches_rssi_on(command_output: bool) -> None:
    pty = PtyPair()
    module = SimulatedAmb8465(pty.stream, command_output=command_output)
    receiver = Amb8465Receiver("amber", serial_opener(pty.path, 9600), "T1+C1")
    service, got = collecting_service([receiver])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(module.serve)
            nursery.start_soon(service.run)
            await wait_for(lambda: module.mode is not None)
            assert module.mode == amb8465.LINK_MODE_CODES["T1+C1"]
            assert module.rssi_enabled
            assert module.resets == 2  # on open, and after switching RSSI on
            await module.transmit(N21, rssi_raw=0xE0)
            await wait_for(lambda: len(got) == 1)
            nursery.cancel_scope.cancel()
    await pty.aclose()
    assert got[0][1].rssi == amb8465.rssi_dbm(0xE0) == -90
    assert got[0][0].meter == ELS


async def test_hex_lines_over_tcp() -> None:
    lines = f"{N21.hex()};-71\n{PLAIN.hex()}\nnot hex\n".encode()

    async def serve(stream: trio.SocketStream) -> None:
        await stream.send_all(lines)
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            receiver = RawHexReceiver("sdr", tcp_opener("127.0.0.1", port))
            service, got = collecting_service([receiver])
            nursery.start_soon(service.run)
            await wait_for(lambda: len(got) == 2 and receiver.discarded == 1)
            nursery.cancel_scope.cancel()
    assert got[0][1].rssi == -71
    assert got[1][0].meter.manufacturer == "LAS"


async def test_a_finished_stdin_like_stream_ends_its_receiver() -> None:
    send, receive = trio.testing.memory_stream_pair()

    async def opener():
        return receive

    receiver = RawHexReceiver("stdin", opener, restartable=False)
    service, got = collecting_service([receiver])
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.run)
            await send.send_all(f"{N21.hex()}\n{PLAIN.hex()}".encode())
            await send.aclose()
    assert len(got) == 2


class MemoryLine:
    """Each open gives a fresh in-memory line with a simulated stick serving the far end."""

    def __init__(self, nursery: trio.Nursery, simulator_class) -> None:
        self.nursery = nursery
        self.simulator_class = simulator_class
        self.simulators: list = []

    async def open(self) -> trio.abc.Stream:
        near, far = trio.testing.memory_stream_pair()
        simulator = self.simulator_class(far)
        self.simulators.append(simulator)
        self.nursery.start_soon(simulator.serve)
        return near


async def test_watchdog_reopens_and_resets_a_silent_receiver(autojump_clock, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mbusgw.receivers")
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            line = MemoryLine(nursery, SimulatedIm871a)
            receiver = Im871aReceiver("stick", line.open, "T1")
            service, got = collecting_service([receiver], silence_timeout=300)
            nursery.start_soon(service.run)
            await wait_for(lambda: line.simulators and line.simulators[0].link_mode is not None)
            await line.simulators[0].transmit(N21)
            await trio.sleep(299)
            assert len(line.simulators) == 1
            await trio.sleep(2)
            await wait_for(lambda: len(line.simulators) == 2)
            await wait_for(lambda: line.simulators[1].link_mode is not None)
            assert line.simulators[1].resets == 1
            await line.simulators[1].transmit(PLAIN)
            await wait_for(lambda: len(got) == 2)
            nursery.cancel_scope.cancel()
    assert service.stats["reopened"] == 1
    assert "heard nothing for 300 s: reopening and resetting" in caplog.text


async def test_an_unanswering_stick_is_retried(autojump_clock, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mbusgw.receivers")

    class Mute(SimulatedIm871a):
        def __init__(self, stream) -> None:
            super().__init__(stream)
            self.silent = True

    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            line = MemoryLine(nursery, Mute)
            receiver = Im871aReceiver("stick", line.open, "T1", response_timeout=1)
            service, _ = collecting_service([receiver], retry_delay=30)
            nursery.start_soon(service.run)
            await trio.sleep(100)
            nursery.cancel_scope.cancel()
    assert 3 <= len(line.simulators) <= 4
    assert "no answer to HCI message 0x01" in caplog.text


async def test_duplicates_are_decoded_once_and_the_best_receiver_is_kept(autojump_clock) -> None:
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            near_line = MemoryLine(nursery, SimulatedIm871a)
            far_line = MemoryLine(nursery, SimulatedAmb8465)
            near = Im871aReceiver("near", near_line.open, "T1")
            far = Amb8465Receiver("far", far_line.open, "T1")
            service, got = collecting_service(
                [near, far], dedupe_window=5, clock=TrioWallClock(epoch)
            )
            nursery.start_soon(service.run)
            await wait_for(lambda: far_line.simulators and far_line.simulators[0].mode)
            await wait_for(lambda: near_line.simulators[0].link_mode is not None)
            await far_line.simulators[0].transmit(N21, rssi_raw=0xC0)  # -106 dBm
            await near_line.simulators[0].transmit(N21, rssi_raw=200)  # about -22 dBm
            await wait_for(lambda: service.stats["frames"] == 2)
            assert len(got) == 1
            assert service.stats["duplicates"] == 1
            assert service.best_receiver(ELS) == "near"
            await trio.sleep(6)
            await far_line.simulators[0].transmit(N21, rssi_raw=0x7F)  # -10.5 dBm, out of window
            await wait_for(lambda: len(got) == 2)
            assert service.best_receiver(ELS) == "far"
            service.reinstall(ELS)
            assert service.best_receiver(ELS) is None
            diagnosis = service.decoder.diagnosis(ELS)
            assert diagnosis.counts["decoded"] == 2
            assert 6 < (diagnosis.last_heard - epoch).total_seconds() < 60
            nursery.cancel_scope.cancel()


def test_receiver_names_must_be_unique() -> None:
    async def never():
        raise AssertionError

    with pytest.raises(ValueError):
        WirelessService([RawHexReceiver("x", never), RawHexReceiver("x", never)], WirelessDecoder())
