"""The bus master on a simulated line, under the mock clock: exchanges, timing rules, retries,
faults, multi-telegram reads, addressing modes and scan probes."""

from __future__ import annotations

import pytest
import trio

from mbusgw.core import decode
from mbusgw.core.busproto import EchoCanceller, ProbeKind
from mbusgw.core.frame import req_ud2, snd_nke
from mbusgw.gateway.bus import BusMaster
from mbusgw.gateway.busrequests import MeterAddress, ReadSettings
from mbusgw.gateway.bustiming import Timing, resolve, response_bound
from mbusgw.gateway.errors import Collision, LineDown, LineNoisy, NoResponse
from mbusgw.gateway.meters import AddressingMode, MultiTelegram
from mbusgw.gateway.settings import ConfigError, LineTiming
from mbusgw.gateway.simulator import MEDIAN_TEMPLATE, SimLine, make_meter
from mbusgw.gateway.simulator.serve import socket_pair
from mbusgw.gateway.transport import StreamTransport

CHAR = 11 / 2400
NO_ANSWER = 330 / 2400 + 0.050 + CHAR + 0.015  # EN 13757-2 bound + first character + latency
PRIMARY = (AddressingMode.PRIMARY,)
SECONDARY = (AddressingMode.SECONDARY,)


def meter(primary: int | None = 1, ident: str = "12345678", **options):
    return make_meter(options.pop("template", MEDIAN_TEMPLATE), ident, primary=primary, **options)


def at(primary: int) -> MeterAddress:
    return MeterAddress(primary=primary)


async def test_a_complete_answer_ends_the_exchange_at_once(sim_bus, autojump_clock) -> None:
    async with sim_bus([meter()]) as (bus, line):
        start = trio.current_time()
        reading = await bus.read(at(1), ReadSettings(init=False))
    assert decode(reading.frames[0]).header.id == "12345678"
    assert (reading.attempts, reading.complete, reading.mode) == (1, True, AddressingMode.PRIMARY)
    # REQ_UD2 (5 characters), 11 bit times of turnaround, 87 characters: not a moment longer
    assert reading.finished == pytest.approx(start + (5 + 1 + 87) * CHAR, abs=1e-9)


async def test_no_answer_is_detected_at_the_en_13757_bound(sim_bus, autojump_clock) -> None:
    assert response_bound(2400) == pytest.approx(0.1875)
    async with sim_bus([meter()]) as (bus, _):
        start = trio.current_time()
        with pytest.raises(NoResponse) as caught:
            await bus.read(at(9), ReadSettings(init=False))
        elapsed = trio.current_time() - start
        assert (caught.value.address, caught.value.attempts) == ("primary 9", 3)
        # three attempts (EN 13757-2 §5.4: at most two repetitions), each the request plus the
        # bound; silence needs no extra gap before the next try
        assert elapsed == pytest.approx(3 * (5 * CHAR + NO_ANSWER), abs=1e-9)
        exchange = await bus.transfer(bytes.fromhex("1040094916"))
        assert exchange.outcome.value == "silent"
        assert exchange.done_at - exchange.request_end == pytest.approx(NO_ANSWER, abs=1e-9)


async def test_the_inter_frame_gap_is_kept(sim_bus, autojump_clock) -> None:
    async with sim_bus([meter()]) as (bus, line):
        for _ in range(3):
            await bus.read(at(1), ReadSettings(init=False))
        assert min(line.stats.gaps) == pytest.approx(CHAR, abs=1e-9)  # 11 bit times
    slow_gap = Timing(inter_frame_gap=0.05)
    async with sim_bus([meter()], timing=slow_gap) as (bus, line):
        for _ in range(3):
            await bus.read(at(1), ReadSettings(init=False))
        assert min(line.stats.gaps) == pytest.approx(0.05, abs=1e-9)


async def test_init_and_wait_after_init(sim_bus, autojump_clock) -> None:
    async with sim_bus([meter()], timing=Timing(wait_after_init=0.2)) as (bus, line):
        start = trio.current_time()
        reading = await bus.read(at(1))
    assert reading.attempts == 2  # SND_NKE, REQ_UD2
    ack = 5 * CHAR + CHAR + CHAR  # SND_NKE, turnaround, E5
    read = (5 + 1 + 87) * CHAR  # REQ_UD2, turnaround, answer (the wait covers the gap)
    assert reading.finished - start == pytest.approx(ack + 0.2 + read, abs=1e-9)


async def test_a_lost_request_is_retried(sim_bus, autojump_clock) -> None:
    device = meter()
    device.ignore_next = 2
    async with sim_bus([device]) as (bus, _):
        reading = await bus.read(at(1), ReadSettings(init=False))
    assert reading.attempts == 3 and decode(reading.frames[0]).header.id == "12345678"


async def test_a_garbled_answer_is_retried_after_the_collision_recovery(
    sim_bus, autojump_clock
) -> None:
    timings = {}
    for recovery in (0.0, 0.3):
        device = meter()
        device.corrupt_next = 1
        async with sim_bus([device], timing=Timing(collision_recovery=recovery)) as (bus, _):
            reading = await bus.read(at(1), ReadSettings(init=False))
            assert reading.attempts == 2 and bus.stats.garbled == 1
            timings[recovery] = reading.duration
    # sent again once the line has been silent that long, instead of as soon as the end of
    # the garbled answer was noticed (silence for two characters plus the latency allowance)
    assert timings[0.3] - timings[0.0] == pytest.approx(0.3 - (2 * CHAR + 0.015), abs=1e-9)


async def test_garbled_on_every_attempt_is_a_collision(sim_bus, autojump_clock) -> None:
    device = meter()
    device.corrupt_next = 3
    async with sim_bus([device]) as (bus, _):
        with pytest.raises(Collision) as caught:
            await bus.read(at(1), ReadSettings(init=False))
    assert caught.value.attempts == 3


async def test_two_meters_at_one_primary_address_collide(sim_bus, autojump_clock) -> None:
    twins = [meter(4, "11111111"), meter(4, "22222222", answer_delay=0.010)]
    async with sim_bus(twins) as (bus, line):
        with pytest.raises(Collision):
            await bus.read(at(4))
        assert line.stats.collisions >= 3
        probe = await bus.probe_primary(4)
    assert probe.kind is ProbeKind.COLLISION


async def test_a_silent_meter_gives_no_response(sim_bus, autojump_clock) -> None:
    device = meter()
    device.silent = True
    async with sim_bus([device]) as (bus, _):
        with pytest.raises(NoResponse):
            await bus.read(at(1))


async def test_an_echoing_converter_is_ignored(sim_bus, autojump_clock) -> None:
    async with sim_bus([meter(template="abb_delta", telegrams=3)], echo=True) as (bus, _):
        reading = await bus.read(at(1))
        assert len(reading.frames) == 3 and reading.complete
        assert bus.stats.echoes == reading.attempts and bus.stats.garbled == 0


def test_echo_canceller_gives_back_what_was_not_an_echo() -> None:
    request = bytes.fromhex("105B015C16")
    canceller = EchoCanceller(request)
    assert canceller.filter(request[:2]) == b""
    assert canceller.filter(request[2:] + b"\xe5") == b"\xe5" and canceller.seen
    other = EchoCanceller(request)
    assert other.filter(b"\x10\x5b\x02") == b"\x10\x5b\x02" and not other.seen
    assert other.filter(b"\x16") == b"\x16"


async def test_slow_meters(sim_bus, autojump_clock) -> None:
    slow = meter()
    slow.extra_delay = 0.3  # beyond the EN 13757-2 bound
    async with sim_bus([slow]) as (bus, _):
        reading = await bus.read(at(1), ReadSettings(init=False))
        assert reading.attempts == 2  # the late answer lands in the retry's window
        patient = ReadSettings(init=False, timing=Timing(response_timeout=0.5))
        reading = await bus.read(at(1), patient)
        assert reading.attempts == 1
        slow.extra_delay = 1.5
        with pytest.raises(NoResponse):
            await bus.read(at(1), ReadSettings(init=False))
        await trio.sleep(2)
        # its answer still arrived, late: dropped before the next exchange, not mistaken
        slow.extra_delay = 0
        fine = await bus.read(at(1), ReadSettings(init=False))
        assert bus.stats.stray_bytes > 0 and decode(fine.frames[0]).header.id == "12345678"


async def test_every_telegram_of_a_multi_telegram_meter(sim_bus, autojump_clock) -> None:
    device = meter(template="svm_f22_telegram1", telegrams=3)
    async with sim_bus([device]) as (bus, _):
        reading = await bus.read(at(1))
        telegrams = [decode(raw) for raw in reading.frames]
        assert [t.more_records_follow for t in telegrams] == [True, True, False]
        assert reading.complete and len(reading.durations) == 3 and reading.attempts == 4
        first = await bus.read(at(1), ReadSettings(multi_telegram=MultiTelegram.OFF))
        assert len(first.frames) == 1 and not first.complete
        limited = await bus.read(at(1), ReadSettings(telegram_limit=2))
        assert len(limited.frames) == 2 and not limited.complete
        # without SND_NKE the FCB goes on toggling from the last one used: the meter goes on
        # with the telegram after the last one read
        rest = await bus.read(at(1), ReadSettings(init=False))
        assert len(rest.frames) == 1 and rest.complete
        layout = [record.dif_vif for record in decode(rest.frames[0]).records]
        assert layout == [record.dif_vif for record in telegrams[2].records]


async def test_a_lost_follow_up_answer_is_asked_for_again(sim_bus, autojump_clock) -> None:
    device = meter(template="abb_delta", telegrams=3)

    def lose_next_answer(count: int) -> None:
        if count == 1:
            device.corrupt_next = 1

    async with sim_bus([device]) as (bus, _):
        reading = await bus.read(at(1), on_telegram=lose_next_answer)
        access = [decode(raw).header.access_number for raw in reading.frames]
        # the same FCB again makes the meter repeat telegram 2, not skip to telegram 3
        assert [decode(raw).more_records_follow for raw in reading.frames] == [True, True, False]
        assert access == [access[0], (access[0] + 1) % 256, (access[0] + 2) % 256]
        assert reading.attempts == 5
        # the follow-up timing applies from the second telegram on
        strict_follow_up = ReadSettings(follow_up=Timing(read_attempts=1))
        device.corrupt_next = 1  # the first telegram: retried under the main timing
        assert len((await bus.read(at(1), strict_follow_up)).frames) == 3
        with pytest.raises(Collision):
            await bus.read(at(1), strict_follow_up, on_telegram=lose_next_answer)


async def test_reading_back_to_back_keeps_a_known_link(sim_bus, autojump_clock) -> None:
    meters = [meter(1), meter(2, "22222222", template="abb_delta", telegrams=3)]
    async with sim_bus(meters) as (bus, line):
        sent: list[bytes] = []
        bus.on_exchange = lambda exchange: sent.append(exchange.request)
        first = await bus.read(at(1), keep_link=True)
        again = await bus.read(at(1), keep_link=True)
        # one SND_NKE to every meter (broadcast, unanswered), then REQ_UD2 only
        assert sent == [snd_nke(0xFF), req_ud2(1, True), req_ud2(1, False)]
        assert (first.attempts, again.attempts) == (2, 1)
        # the other FCB: a new telegram, not the previous one repeated
        access = [decode(r.frames[0]).header.access_number for r in (first, again)]
        assert access[1] == (access[0] + 1) % 256
        # a scheduled read initialises the meter itself, and the link stays known
        assert (await bus.read(at(1))).attempts == 2
        assert (await bus.read(at(1), keep_link=True)).attempts == 1
        # any other request may have reached any meter: the next read starts afresh
        await bus.ping(1)
        sent.clear()
        assert (await bus.read(at(1), keep_link=True)).attempts == 2
        assert sent[0] == snd_nke(0xFF)
        # a read that failed leaves the link state unknown: that meter gets its own SND_NKE
        line.meters[0].ignore_next = 3
        with pytest.raises(NoResponse):
            await bus.read(at(1), keep_link=True)
        sent.clear()
        assert (await bus.read(at(1), keep_link=True)).attempts == 2
        assert sent == [snd_nke(1), req_ud2(1, True)]
        # a multi-telegram meter starts over at its first telegram after its last one
        for _ in range(3):
            multi = await bus.read(at(2), keep_link=True)
            assert multi.attempts == 3 and len(multi.frames) == 3 and multi.complete
            assert decode(multi.frames[0]).more_records_follow


async def test_a_meter_that_does_not_start_over_gets_its_snd_nke(sim_bus, autojump_clock) -> None:
    device = meter(2, template="abb_delta", telegrams=3)
    device.restarts = False
    async with sim_bus([device]) as (bus, _):
        layouts = []
        for attempts in (4, 5, 4):  # broadcast + 3; its last telegram again, SND_NKE + 3; …
            reading = await bus.read(at(2), keep_link=True)
            assert reading.attempts == attempts and reading.complete
            telegrams = [decode(raw) for raw in reading.frames]
            assert [t.more_records_follow for t in telegrams] == [True, True, False]
            layouts.append([[r.dif_vif for r in t.records] for t in telegrams])
        assert layouts[0] == layouts[1] == layouts[2]


async def test_secondary_enhanced_and_fallback_addressing(sim_bus, autojump_clock) -> None:
    device = meter(7, "1234567A", fabrication="00112233")
    async with sim_bus([device]) as (bus, _):
        by_id = await bus.read(MeterAddress(secondary="1234567A"), ReadSettings(modes=SECONDARY))
        assert by_id.mode is AddressingMode.SECONDARY and by_id.attempts == 2
        assert decode(by_id.frames[0]).header.id == "1234567A"
        enhanced = MeterAddress(secondary="1234567A", fabrication="00112233")
        modes = (AddressingMode.ESECONDARY,)
        assert len((await bus.read(enhanced, ReadSettings(modes=modes))).frames) == 1
        with pytest.raises(NoResponse):
            wrong = MeterAddress(secondary="1234567A", fabrication="99999999")
            await bus.read(wrong, ReadSettings(modes=modes))
        both = MeterAddress(primary=7, secondary="99999999")
        fallback = ReadSettings(modes=(AddressingMode.SECONDARY, AddressingMode.PRIMARY))
        reading = await bus.read(both, fallback)
        assert reading.mode is AddressingMode.PRIMARY
        assert decode(reading.frames[0]).header.id == "1234567A"
        with pytest.raises(ConfigError):
            await bus.read(MeterAddress(primary=7), ReadSettings(modes=SECONDARY))
        reset = await bus.application_reset(MeterAddress(primary=7), subcode=0)
        assert reset.frames == (b"\xe5",)


async def test_identical_acknowledgements_do_not_hide_a_collision(sim_bus, autojump_clock) -> None:
    # same model, same turnaround: their E5s merge into one clean E5
    twins = [meter(None, "11111111"), meter(None, "11111112")]
    async with sim_bus(twins) as (bus, line):
        select = await bus.select("1111111F")
        assert select.outcome.value == "answer" and select.frames == (b"\xe5",)
        probe = await bus.probe_secondary("1111111F")
        assert probe.kind is ProbeKind.COLLISION
        assert (await bus.probe_secondary("11111112")).kind is ProbeKind.FOUND
        assert (await bus.probe_secondary("11111113")).kind is ProbeKind.EMPTY
        assert (await bus.probe_primary(1)).kind is ProbeKind.EMPTY


async def test_a_late_second_answer_is_noticed_by_a_probe(sim_bus, autojump_clock) -> None:
    # at 38400 baud a telegram is shorter than the spread of answer delays: the two answers
    # do not overlap, and only listening until the window closes shows the second one
    twins = [meter(None, "11111111"), meter(None, "11111112", answer_delay=0.045)]
    async with sim_bus(twins, 38400) as (bus, _):
        probe = await bus.probe_secondary("1111111F")
    assert probe.kind is ProbeKind.COLLISION


class ThresholdLine(StreamTransport):
    """A socket-pair line that says it holds bytes back like TCP's SO_RCVLOWAT (it does not:
    the bytes come as they come), and records the thresholds asked for."""

    def __init__(self, stream: trio.abc.Stream, baud: int) -> None:
        super().__init__(stream, baud)
        self.thresholds: list[tuple[float, int]] = []

    def set_receive_threshold(self, count: int) -> bool:
        self.thresholds.append((trio.current_time(), count))
        return True


async def test_a_held_back_frame_rest_is_asked_for_then_released(autojump_clock) -> None:
    line = SimLine([meter(1)], 2400)
    master_end, line_end = socket_pair()
    transport = ThresholdLine(master_end, 2400)
    bus = BusMaster(transport)
    exchanges = []
    bus.on_exchange = exchanges.append
    async with trio.open_nursery() as nursery:
        nursery.start_soon(line.serve, line_end)
        await nursery.start(bus.run)
        await bus.read(at(1), ReadSettings(init=False))
        probe = await bus.probe_primary(1)  # the read after its E5 listens to the window's end
        nursery.cancel_scope.cancel()
    assert probe.kind is ProbeKind.FOUND
    read, probe_read = exchanges[0], exchanges[-1]
    during = [(t, count) for t, count in transport.thresholds if t <= read.done_at]
    # what is still missing of the 87-byte frame, asked for once its length was known (again
    # as bytes come in: this line does not hold them back), and released once the frame is in
    assert during[0][0] == read.first_byte_at and during[-1] == (read.done_at, 1)
    missing = [count for _, count in during[:-1]]
    assert 0 < missing[-1] < missing[0] < 87 and missing == sorted(missing, reverse=True)
    # listening on after a complete frame: released as soon as the frame is in, so that a late
    # second meter is seen at once (and not only when the window has closed)
    released = [t for t, count in transport.thresholds if count == 1]
    frame_end = probe_read.request_end + (1 + 87) * CHAR  # turnaround, then the 87 characters
    assert released[-1] == pytest.approx(frame_end, abs=1e-9) and probe_read.done_at > frame_end


async def test_a_broken_line_is_line_down(autojump_clock) -> None:
    line = SimLine([meter()], 2400)
    master_end, line_end = socket_pair()
    bus = BusMaster(StreamTransport(master_end, 2400))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(line.serve, line_end)
        await nursery.start(bus.run)
        await bus.read(at(1))
        await line_end.aclose()
        with pytest.raises(LineDown):
            await bus.read(at(1))
        nursery.cancel_scope.cancel()


async def test_a_caller_that_gives_up_does_not_disturb_the_line(sim_bus, autojump_clock) -> None:
    async with sim_bus([meter()]) as (bus, _):
        with trio.move_on_after(0.01):
            await bus.read(at(1))
        with pytest.raises(ConfigError):  # a memory line cannot change its rate
            await bus.read(at(1), ReadSettings(baud=300))
        reading = await bus.read(at(1))
        assert decode(reading.frames[0]).header.id == "12345678"


async def test_callers_are_not_left_waiting_when_the_bus_stops(autojump_clock) -> None:
    line = SimLine([meter()], 2400)
    master_end, line_end = socket_pair()
    bus = BusMaster(StreamTransport(master_end, 2400))
    with pytest.raises(LineDown, match="not running"):
        await bus.read(at(1))
    outcomes: list[BaseException] = []

    async def reader() -> None:
        try:
            await bus.read(at(1))
        except LineDown as exc:
            outcomes.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(line.serve, line_end)
        async with trio.open_nursery() as bus_nursery:
            await bus_nursery.start(bus.run)
            nursery.start_soon(reader)
            nursery.start_soon(reader)
            await trio.sleep(0.01)  # the first read is on the wire, the second queued
            bus_nursery.cancel_scope.cancel()
        await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert len(outcomes) == 2 and all("stopped" in str(e) for e in outcomes)


def test_timing_settings() -> None:
    stored = Timing.from_settings(LineTiming(), {"read_retries": 1, "response_timeout_ms": 400})
    assert stored.read_attempts == 2 and stored.select_attempts == 3
    assert stored.response_timeout == 0.4 and stored.wait_after_init == 0.05
    assert stored.collision_recovery == 0.3 and stored.inter_frame_gap is None
    assert resolve(Timing(), 2400).recovery == pytest.approx(20 * CHAR)
    assert Timing.from_settings(LineTiming()).response_timeout is None
    with pytest.raises(ConfigError, match="unknown setting"):
        Timing.from_settings(LineTiming(), {"respons_timeout_ms": 1})
    times = resolve(Timing(), 300)
    assert times.response == pytest.approx(1.15) and times.gap == pytest.approx(11 / 300)
    assert times.no_answer == pytest.approx(1.15 + 11 / 300 + 0.015)
    for bad in ({"read_attempts": 0}, {"response_timeout": -1}, {"inter_frame_gap": 11}):
        with pytest.raises(ConfigError):
            Timing(**bad)
    with pytest.raises(ConfigError):
        ReadSettings(modes=())
    with pytest.raises(ConfigError):
        ReadSettings(telegram_limit=0)
    with pytest.raises(ConfigError):
        MeterAddress(primary=251)
    with pytest.raises(ConfigError):
        MeterAddress(secondary="1234")


@pytest.mark.parametrize("fault", ["noise", "flood"])
async def test_a_line_that_never_goes_quiet_fails_each_read_in_bounded_time(
    sim_bus, autojump_clock, fault
) -> None:
    async with sim_bus([meter(1), meter(2, "22222222")]) as (bus, line):
        if fault == "noise":
            line.noise = (0.005, 0.05)
        else:
            line.flood = True
        for primary in (1, 2):
            start = trio.current_time()
            with pytest.raises(LineNoisy, match="line noisy at primary"):
                await bus.read(at(primary))
            # one attempt (request, window, longest frame, the silence after it), the gap,
            # then the recovery plus one longest frame waiting for the line to go quiet
            longest = 261 * CHAR + 2 * CHAR + 0.015
            bound = (5 * CHAR + NO_ANSWER + longest) + CHAR + (20 * CHAR + longest)
            assert trio.current_time() - start <= bound + 0.011  # + the converter's chunking
        line.noise = None
        line.flood = False
        await trio.sleep(1)
        reading = await bus.read(at(2))
        assert decode(reading.frames[0]).header.id == "22222222"
        assert bus.stats.noisy == 2 and bus.stats.stray_bytes > 0


async def test_retries_count_repeated_requests_only(sim_bus, autojump_clock) -> None:
    multi = meter(2, "22222222", template="abb_delta", telegrams=3)
    async with sim_bus([meter(1), multi]) as (bus, line):
        single = await bus.read(at(1))
        assert (single.attempts, single.retries) == (2, 0)  # SND_NKE, REQ_UD2
        three = await bus.read(at(2))
        assert (three.attempts, three.retries) == (4, 0)  # SND_NKE and three telegrams
        line.meters[1].ignore_next = 1
        again = await bus.read(at(2))
        assert (again.attempts, again.retries) == (5, 1)


async def test_raw_access_holds_the_line_and_others_queue(sim_bus, autojump_clock) -> None:
    async with sim_bus([meter(1)]) as (bus, line):
        order: list[str] = []

        async def scheduled_read() -> None:
            await bus.read(at(1))
            order.append("read")

        async with trio.open_nursery() as nursery, bus.raw() as raw:
            nursery.start_soon(scheduled_read)
            await trio.sleep(1)  # the read waits for the line
            assert order == []
            answer = await raw.send(snd_nke(1))
            assert answer.received == b"\xe5" and answer.outcome.value == "answer"
            # not a frame: what came back is passed on as it is
            line.meters[0].corrupt_next = 1
            garbled = await raw.send(req_ud2(1, True))
            assert garbled.outcome.value == "garbled" and len(garbled.received) > 20
            assert await raw.receive(0.5) == b""
            line.noise = (0.05, 0.1)
            heard = await raw.receive(1.0)
            line.noise = None
            assert 5 <= len(heard) <= 21
            order.append("raw done")
            await trio.sleep(0.5)
        await trio.sleep(1)
        assert order == ["raw done", "read"]
        # a holder cancelled before it got the line gives it back at once
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bus.read, at(1))
            with trio.move_on_after(0):
                async with bus.raw():
                    raise AssertionError("not granted in no time")
        assert (await bus.read(at(1))).frames
