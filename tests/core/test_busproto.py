"""The bus exchange protocol without I/O: requests out, bytes and times in, byte by byte and at
any time step. A small line model here plays the meters and the faults."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mbusgw.core.busproto import (
    COLLISION,
    LONG_FRAME_MAX,
    NO_RESPONSE,
    NOISY,
    BusProtocol,
    Done,
    EchoCanceller,
    Exchange,
    Failed,
    Outcome,
    ProbeKind,
    Reception,
    Target,
    Telegram,
    expected_kind,
)
from mbusgw.core.frame import Discarded, FrameParser, req_ud2, select_secondary, snd_nke
from mbusgw.gateway.bustiming import Timing, resolve

BAUD = 2400
CHAR = 11 / BAUD


TIMES = resolve(Timing(), BAUD)  # the bus master's default timing


def rsp_ud(access: int, more: bool = False, address: int = 1) -> bytes:
    """A valid RSP_UD: fixed header, one record, and DIF 0x1F when more records follow."""
    body = (
        bytes([0x08, address, 0x72])
        + bytes.fromhex("78563412 2D2C 01 07")
        + bytes([access, 0, 0, 0])
    )
    body += bytes.fromhex("0413 2A000000") + (b"\x1f" if more else b"")
    return bytes([0x68, len(body), len(body), 0x68]) + body + bytes([sum(body) & 0xFF, 0x16])


def more_follows(frame: bytes) -> bool:
    return frame[-3] == 0x1F


def primary(address: int = 1) -> Target:
    key = ("primary", address)
    return Target("primary", key, f"primary {address}", address, None, key)


class Line:
    """What the master receives: ``answer(request, request_end)`` gives (time, byte) pairs."""

    def __init__(self, answer: Callable[[bytes, float], list[tuple[float, int]]]) -> None:
        self.answer = answer
        self.requests: list[tuple[float, bytes]] = []


def transmit(data: bytes, start: float) -> list[tuple[float, int]]:
    """``data`` on the wire from ``start``: each byte is in once its 11 bits are."""
    return [(start + (i + 1) * CHAR, b) for i, b in enumerate(data)]


def meter(frames: dict[bytes, bytes], delay: float = CHAR) -> Line:
    return Line(lambda request, end: transmit(frames.get(request, b""), end + delay))


def run(
    proto: BusProtocol,
    begin: Callable[[float], None],
    line: Line,
    late: Iterator[float],
    split: Iterator[int],
    *,
    horizon: float = 600.0,
    noise: Callable[[float, float], list[tuple[float, int]]] | None = None,
) -> tuple[list, float]:
    """Drive ``proto`` like a driver that wakes ``late`` seconds after each deadline or
    arrival and takes what came in pieces of ``split`` bytes. Returns the events and the time
    the job ended."""
    now = 0.0
    begin(now)
    pending: list[tuple[float, int]] = []
    events: list = []
    sent_until = 0.0
    while proto.busy:
        out = proto.take_output()
        if out:
            end = now + len(out) * CHAR
            line.requests.append((now, out))
            pending += line.answer(out, end)
            pending.sort()
        events += proto.pop_events()
        if not proto.busy:
            break
        nxt = min(proto.deadline, pending[0][0] if pending else math.inf)
        if noise is not None:
            more = noise(sent_until, now + 1.0)
            sent_until = now + 1.0
            pending = sorted(pending + more)
            nxt = min(nxt, pending[0][0] if pending else math.inf)
        assert nxt < math.inf, "the protocol waits for nothing"
        now = max(now, nxt) + next(late)
        assert now < horizon, "the job never ended"
        arrived = [b for t, b in pending if t <= now]
        pending = [(t, b) for t, b in pending if t > now]
        while arrived and proto.busy:
            size = max(1, next(split))
            proto.receive(bytes(arrived[:size]), now)
            arrived = arrived[size:]
            out = proto.take_output()
            if out:  # a job that ended on these bytes may not send: only one job runs
                raise AssertionError("a request went out while bytes were being fed")
        proto.tick(now)
    events += proto.pop_events()
    return events, now


def exact() -> tuple[Iterator[float], Iterator[int]]:
    return iter(lambda: 0.0, None), iter(lambda: 1, None)


def result(events: list):
    return events[-1]


def exchanges(events: list) -> list[Exchange]:
    return [e for e in events if isinstance(e, Exchange)]


def test_a_clean_read_byte_by_byte() -> None:
    proto = BusProtocol(more_follows)
    frame = rsp_ud(7)
    line = meter({snd_nke(1): b"\xe5", req_ud2(1, True): frame})
    events, _ = run(
        proto,
        lambda now: proto.read([primary()], TIMES, TIMES, now=now, limit=10),
        line,
        *exact(),
    )
    done = result(events)
    assert isinstance(done, Done)
    assert done.value.frames == (frame,) and done.value.complete
    assert (done.value.requests, done.value.retries) == (2, 0)
    assert [request for _, request in line.requests] == [snd_nke(1), req_ud2(1, True)]
    # the SND_NKE's E5 ends its exchange at once; the REQ_UD2 after the inter-frame gap
    ack, read = exchanges(events)
    assert ack.done_at == pytest.approx(ack.request_end + 2 * CHAR)
    assert read.sent_at == pytest.approx(ack.done_at + CHAR)
    assert read.done_at == pytest.approx(read.request_end + (1 + len(frame)) * CHAR)
    assert [e.count for e in events if isinstance(e, Telegram)] == [1]


def test_multi_telegram_toggles_the_fcb_and_counts_no_retries() -> None:
    proto = BusProtocol(more_follows)
    answers = {
        snd_nke(1): b"\xe5",
        req_ud2(1, True): rsp_ud(1, more=True),
        req_ud2(1, False): rsp_ud(2, more=True),
    }
    sent = []

    def answer(request: bytes, end: float) -> list[tuple[float, int]]:
        sent.append(request)
        # the third REQ_UD2 (FCB 1 again) gets the last telegram
        frame = rsp_ud(3) if len(sent) == 4 else answers.get(request, b"")
        return transmit(frame, end + CHAR)

    events, _ = run(
        proto,
        lambda now: proto.read([primary()], TIMES, TIMES, now=now, limit=10),
        Line(answer),
        *exact(),
    )
    done = result(events)
    assert len(done.value.frames) == 3 and done.value.complete
    assert (done.value.requests, done.value.retries) == (4, 0)
    assert sent == [snd_nke(1), req_ud2(1, True), req_ud2(1, False), req_ud2(1, True)]


def test_the_exchanges_of_a_read_run_no_python_code_unless_their_events_are_asked_for() -> None:
    """A read is decided on C data: a driver that passes no exchange or progress on gets none
    made, and between the request and the read's result (its event included) no Python code
    runs but the "more records follow" decision the protocol was given."""
    proto = BusProtocol(more_follows)
    proto.report_exchanges = proto.report_progress = False
    frames = {req_ud2(1, True): rsp_ud(1, more=True), req_ud2(1, False): rsp_ud(2)}
    line = meter({snd_nke(1): b"\xe5", **frames})
    called: list[str] = []

    def profile(frame, event: str, arg) -> None:
        code = frame.f_code
        if event == "call" and (code.co_filename != __file__ or code.co_name == "more_follows"):
            called.append(code.co_qualname)  # not the line model's own calls

    targets = [primary()]

    def read(now: float) -> None:
        proto.read(targets, TIMES, TIMES, now=now, limit=10)

    def profiled(now: float) -> None:
        sys.setprofile(profile)
        read(now)

    run(proto, read, line, *exact())  # the first reads the times' properties: once
    try:
        events, _ = run(proto, profiled, line, *exact())
    finally:
        sys.setprofile(None)
    (done,) = [e for e in events if isinstance(e, Done)]
    assert events == [done] and len(done.value.frames) == 2
    # the two decisions; the result and its event are compiled
    assert sorted(called) == ["more_follows", "more_follows"]


def test_the_telegram_limit_stops_a_meter_with_more() -> None:
    proto = BusProtocol(more_follows)
    line = meter({req_ud2(1, True): rsp_ud(1, more=True)})
    events, _ = run(
        proto,
        lambda now: proto.read([primary()], TIMES, TIMES, now=now, init=False, limit=1),
        line,
        *exact(),
    )
    assert not result(events).value.complete


def test_silence_is_no_response_after_every_attempt() -> None:
    proto = BusProtocol(more_follows)
    events, end = run(
        proto,
        lambda now: proto.read([primary(9)], TIMES, TIMES, now=now, init=False),
        meter({}),
        *exact(),
    )
    failed = result(events)
    assert failed == Failed(NO_RESPONSE, "primary 9", 3)
    assert end == pytest.approx(3 * (5 * CHAR + TIMES.no_answer))
    assert [e.outcome for e in exchanges(events)] == [Outcome.SILENT] * 3


def test_a_garbled_answer_is_retried_after_the_recovery_and_counted() -> None:
    proto = BusProtocol(more_follows)
    frame = rsp_ud(1)
    bad = frame[:-2] + bytes([(frame[-2] + 1) & 0xFF, 0x16])
    answers = iter([bad, frame])
    line = Line(lambda request, end: transmit(next(answers), end + CHAR))
    events, _ = run(
        proto,
        lambda now: proto.read([primary()], TIMES, TIMES, now=now, init=False),
        line,
        *exact(),
    )
    first, second = exchanges(events)
    assert first.outcome is Outcome.GARBLED and second.outcome is Outcome.ANSWER
    assert second.sent_at >= first.done_at and second.sent_at == pytest.approx(
        max(first.done_at, (first.request_end + (1 + len(bad)) * CHAR) + TIMES.recovery)
    )
    assert (result(events).value.requests, result(events).value.retries) == (2, 1)


def test_garbled_every_time_is_a_collision() -> None:
    proto = BusProtocol(more_follows)
    line = Line(lambda request, end: transmit(b"\x68\x05\x05", end + CHAR))
    events, _ = run(
        proto,
        lambda now: proto.ping(1, TIMES, now=now),
        line,
        *exact(),
    )
    assert result(events).kind == COLLISION and result(events).attempts == 3


def test_an_echo_is_removed() -> None:
    proto = BusProtocol(more_follows)
    frame = rsp_ud(1)
    line = Line(
        lambda request, end: (
            transmit(request, end - len(request) * CHAR) + transmit(frame, end + CHAR)
        )
    )
    events, _ = run(
        proto,
        lambda now: proto.read([primary()], TIMES, TIMES, now=now, init=False),
        line,
        *exact(),
    )
    (read,) = exchanges(events)
    assert read.echo and read.outcome is Outcome.ANSWER and result(events).value.frames == (frame,)


def test_address_fallback_to_the_next_mode() -> None:
    proto = BusProtocol(more_follows)
    selection = select_secondary("99999999")
    secondary = Target(
        "secondary",
        ("secondary", "99999999"),
        "secondary 99999999",
        None,
        selection,
        ("primary", 7),
    )
    frame = rsp_ud(1, address=7)
    line = meter({snd_nke(7): b"\xe5", req_ud2(7, True): frame})
    events, _ = run(
        proto,
        lambda now: proto.read([secondary, primary(7)], TIMES, TIMES, now=now),
        line,
        *exact(),
    )
    done = result(events).value
    assert done.mode == "primary" and done.frames == (frame,)
    # three unanswered selections are retries of this read
    assert (done.requests, done.retries) == (2, 3)


def test_a_probe_listens_until_the_window_closes() -> None:
    proto = BusProtocol(more_follows)
    frame = rsp_ud(1)
    # two answers: the second, late one is seen only by listening on
    line = Line(
        lambda request, end: (
            transmit(b"\xe5" if request == snd_nke(1) else frame, end + CHAR)
            + (transmit(frame, end + 0.1) if request != snd_nke(1) else [])
        )
    )
    events, _ = run(proto, lambda now: proto.probe_primary(1, TIMES, now=now), line, *exact())
    assert result(events).value.kind is ProbeKind.COLLISION
    line = meter({snd_nke(1): b"\xe5", req_ud2(1, True): frame})
    events, _ = run(proto, lambda now: proto.probe_primary(1, TIMES, now=now), line, *exact())
    probe = result(events).value
    assert probe.kind is ProbeKind.FOUND and probe.frame == frame and probe.requests == 2
    events, _ = run(proto, lambda now: proto.probe_primary(2, TIMES, now=now), line, *exact())
    assert result(events).value.kind is ProbeKind.EMPTY


def flood(start: float, end: float) -> list[tuple[float, int]]:
    """A converter that sends without a pause: a byte every character time."""
    first = math.floor(start / CHAR) + 1
    return [(i * CHAR, 0x55) for i in range(first, math.floor(end / CHAR) + 1)]


def sparse_noise(start: float, end: float) -> list[tuple[float, int]]:
    """A byte of noise every 5 to 50 ms (a fixed pattern of those)."""
    pattern = (0.005, 0.05, 0.017, 0.031, 0.044, 0.009)
    out, t, i = [], 0.0, 0
    while t < end:
        t += pattern[i % len(pattern)]
        i += 1
        if start < t <= end:
            out.append((t, 0xA5))
    return out


# one attempt: the request, the answer window, the longest frame, the silence that ends it;
# then the gap, and the wait for a quiet line: the recovery plus the longest frame and that
# silence
ATTEMPT = 5 * CHAR + TIMES.no_answer + LONG_FRAME_MAX * CHAR + TIMES.char_gap
SETTLE = TIMES.gap + TIMES.recovery + LONG_FRAME_MAX * CHAR + TIMES.char_gap


@pytest.mark.parametrize("noise", [flood, sparse_noise])
def test_a_line_that_never_goes_quiet_ends_the_job_in_bounded_time(noise) -> None:
    proto = BusProtocol(more_follows)
    line = meter({snd_nke(1): b"\xe5", req_ud2(1, True): rsp_ud(1)})
    events, end = run(
        proto,
        lambda now: proto.read([primary()], TIMES, TIMES, now=now),
        line,
        *exact(),
        noise=noise,
    )
    failed = result(events)
    assert failed.kind == NOISY and "not quiet" in failed.detail
    assert end <= ATTEMPT + SETTLE + 0.001
    assert proto.stats.noisy == 1
    # the line is usable for the next job as soon as it is quiet
    events, _ = run(
        proto, lambda now: proto.read([primary()], TIMES, TIMES, now=now), line, *exact()
    )
    assert isinstance(result(events), Done)


def test_a_meter_answering_forever() -> None:
    """A meter that keeps sending its telegram back to back: clean frames, but the line never
    goes quiet for the next request."""
    proto = BusProtocol(more_follows)
    frame = rsp_ud(1)

    def stuck(start: float, end: float) -> list[tuple[float, int]]:
        first = math.floor(start / CHAR) + 1
        last = math.floor(end / CHAR)
        return [(i * CHAR, frame[(i + 3) % len(frame)]) for i in range(first, last + 1)]

    events, end = run(
        proto,
        lambda now: proto.read([primary()], TIMES, TIMES, now=now, init=False),
        meter({}),
        *exact(),
        noise=stuck,
    )
    assert result(events).kind == NOISY
    assert exchanges(events)[0].detail == "the line did not go quiet"
    assert end <= ATTEMPT + SETTLE + 0.001


def test_one_job_at_a_time_and_abort() -> None:
    proto = BusProtocol(more_follows)
    proto.ping(1, TIMES, now=0.0)
    assert proto.take_output() == snd_nke(1) and proto.receiving
    with pytest.raises(RuntimeError):
        proto.ping(2, TIMES, now=0.0)
    proto.abort()
    assert not proto.busy and proto.deadline == math.inf
    proto.ping(2, TIMES, now=1.0)
    assert proto.take_output() == snd_nke(2)


LATE = st.lists(st.floats(0, 0.02), min_size=1, max_size=30)
SPLIT = st.lists(st.integers(1, 300), min_size=1, max_size=30)


def cycle(values: list) -> Iterator:
    while True:
        yield from values


@pytest.mark.property
@settings(max_examples=150, deadline=None)
@given(late=LATE, split=SPLIT, telegrams=st.integers(1, 4), echo=st.booleans())
def test_any_time_steps_and_chunks_read_every_telegram(late, split, telegrams, echo) -> None:
    """However late the driver wakes (up to the latency allowance) and however the bytes are
    cut, a clean meter is read completely with no retry."""
    proto = BusProtocol(more_follows)
    count = [0]

    def answer(request: bytes, end: float) -> list[tuple[float, int]]:
        back = transmit(request, end - len(request) * CHAR) if echo else []
        if request == snd_nke(1):
            return back + transmit(b"\xe5", end + CHAR)
        count[0] += 1
        return back + transmit(rsp_ud(count[0], more=count[0] < telegrams), end + CHAR)

    events, _ = run(
        proto,
        lambda now: proto.read([primary()], TIMES, TIMES, now=now, limit=10),
        Line(answer),
        cycle(late),
        cycle(split),
    )
    done = result(events)
    assert isinstance(done, Done), done
    assert len(done.value.frames) == telegrams and done.value.retries == 0


@pytest.mark.property
@settings(max_examples=100, deadline=None)
@given(
    late=LATE,
    split=SPLIT,
    period=st.floats(CHAR, 0.05),
    start=st.floats(0, 0.5),
    attempts=st.integers(1, 4),
)
def test_any_noise_ends_every_job_within_its_bound(late, split, period, start, attempts) -> None:
    """Noise from any moment, at any rate up to a flood: the job ends within its attempts'
    bounds, whatever the driver's time steps."""
    proto = BusProtocol(more_follows)
    times = replace(TIMES, read_attempts=attempts)

    def noise(lo: float, hi: float) -> list[tuple[float, int]]:
        first = max(0, math.floor((lo - start) / period) + 1)
        last = math.floor((hi - start) / period)
        return [(start + i * period, 0x33) for i in range(first, last + 1)]

    line = meter({snd_nke(1): b"\xe5", req_ud2(1, True): rsp_ud(1)})
    slack = 0.02 * 4 * attempts  # the driver's lateness, per wake that ends a phase
    bound = 2 * attempts * (ATTEMPT + SETTLE + slack)
    events, end = run(
        proto,
        lambda now: proto.read([primary()], times, times, now=now),
        line,
        cycle(late),
        cycle(split),
        noise=noise,
        horizon=bound + 1,
    )
    assert isinstance(result(events), (Done, Failed))
    assert end <= bound
    for exchange in exchanges(events):
        assert exchange.done_at - exchange.sent_at <= ATTEMPT + 0.02 * 2 + 1e-9


def test_a_slow_meter_answers_into_the_retry_and_its_late_answer_is_stray() -> None:
    proto = BusProtocol(more_follows)
    frame = rsp_ud(1)
    line = meter({req_ud2(1, True): frame}, delay=0.3)  # beyond the 208 ms window
    events, _ = run(
        proto,
        lambda now: proto.read([primary()], TIMES, TIMES, now=now, init=False, limit=1),
        line,
        *exact(),
    )
    first, second = exchanges(events)
    assert first.outcome is Outcome.SILENT and second.outcome is Outcome.ANSWER
    assert result(events).value.retries == 1
    # the second request's own answer comes after its exchange: stray before the next one
    proto.receive(frame, second.done_at + 0.3)
    proto.ping(1, TIMES, now=second.done_at + 1)
    proto.take_output()
    proto.tick(second.done_at + 2)
    (ping,) = [e for e in proto.pop_events() if isinstance(e, Exchange)]
    assert ping.stray == len(frame) and proto.stats.stray_bytes == len(frame)


# what a meter, several meters or a noisy line may put on the wire, in pieces
ANSWER_PIECES = st.lists(
    st.one_of(
        st.integers(0, 9).map(lambda access: rsp_ud(access, more=access % 2 == 1)),
        st.just(b"\xe5"),
        st.just(snd_nke(3)),
        st.binary(min_size=1, max_size=8),  # noise
        st.integers(0, 9).map(lambda access: rsp_ud(access)[: 4 + access]),  # cut short
        st.sampled_from([b"\x68\x02\x02\x68", b"\x68\x05\x06\x68", b"\x68\x09\x09\x10"]),
    ),
    min_size=1,
    max_size=4,
)


def events_seen(events: list) -> list[tuple[str, int]]:
    return [(type(e).__name__, e.offset) for e in events]


@pytest.mark.property
@settings(max_examples=400, deadline=None)
@given(
    pieces=ANSWER_PIECES,
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=40),
    echo=st.booleans(),
    strict=st.booleans(),
    expect_ack=st.sampled_from([False, True, None]),
)
def test_a_reception_decides_as_the_frame_parser_sees_every_chunk(
    pieces, cuts, echo, strict, expect_ack
) -> None:
    """A reception keeps the start of a frame in C and lets the frame parser see the bytes
    only once they are more than that: whatever the bytes and however they are cut, it
    decides (complete, garbled, the events, the bytes) as a parser fed every chunk does."""
    request = req_ud2(1, True)
    wire = (request if echo else b"") + b"".join(pieces)
    reception = Reception(
        request, char=CHAR, char_gap=TIMES.char_gap, expect_ack=expect_ack, strict=strict
    )
    reception.start(1.0)
    canceller, parser = EchoCanceller(request), FrameParser()
    events: list = []
    garbled = done = False
    received = b""
    at, k = 0.1, 0
    chunks = cycle(cuts)
    while k < len(wire) and not done:
        size = next(chunks)
        chunk, k, at = wire[k : k + size], k + size, at + size * CHAR
        more = reception.take(at, chunk)
        # the model: every chunk goes through the echo canceller and the parser at once
        answer = canceller.filter(chunk)
        received += answer
        parser.feed(answer)
        new = parser.events()
        events += new
        if len(events) > 1 or any(isinstance(e, Discarded) for e in new):
            garbled = True
        elif not garbled and events and parser.buffered == 0 and not strict:
            done = expected_kind(events[0], expect_ack)
        assert (reception.done, reception.garbled) == (done, garbled)
        assert reception.data == received and reception.buffered == parser.buffered
        assert reception.echo_seen == canceller.seen
        waiting = reception.remaining > 0 and reception.pace_until > at
        assert more == (bool(answer) and waiting and not done)
        if received:
            assert reception.deadline <= 1.0 + LONG_FRAME_MAX * CHAR + TIMES.char_gap
    if not done:
        reception.expire(math.inf)
        events += parser.flush()
    assert events_seen(reception.events) == events_seen(events)
