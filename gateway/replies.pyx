# cython: language_level=3
"""What reading a meter gives, from the line's raw answer to the pipeline's reading: the
master's ``ReadReply`` and the decoded ``MeterReading``.

Compiled: in continuous mode a line's thread makes each of them right after waking for the
meter's answer, when every interpreted step costs many times what it costs warm.
"""

cimport cython

from mbusgw.core import MBusError, decode
from mbusgw.gateway.errors import describe
from mbusgw.gateway.live import LiveReading


@cython.dataclasses.dataclass(frozen=True)
cdef class ReadReply:
    """The raw telegrams of one meter reading, in order."""

    address: object  # MeterAddress
    mode: object  # AddressingMode
    frames: tuple
    attempts: object  # int: requests sent in total (selection, init, every REQ_UD2, retries)
    started: cython.double
    finished: cython.double
    durations: tuple  # per telegram, retries included
    complete: cython.bint  # False when the telegram limit stopped a meter that had more to send
    retries: object = 0  # int: requests that repeated one already sent (0 for a clean read)

    @property
    def duration(self) -> float:
        return self.finished - self.started


def read_reply(address, got) -> ReadReply:
    """The reading of ``address`` the protocol's ``Telegrams`` ``got`` make."""
    return ReadReply(
        address,
        got.mode,
        got.frames,
        got.requests,
        got.started,
        got.finished,
        got.durations,
        got.complete,
        got.retries,
    )


@cython.dataclasses.dataclass
cdef class MeterReading:
    """The outcome of reading one meter, ready for the store, the meter log and the snapshot."""

    meter: object  # Meter
    read_at: object  # datetime
    ok: cython.bint
    frames: tuple = ()
    telegrams: tuple = ()
    attempts: object = 0  # int
    duration: cython.double = 0.0
    reply_ended: cython.double = 0.0
    error: object = None  # str
    status_byte: object = None  # int
    failure: object = None  # the kind of error that failed the reading (an exception type)

    def live(self, double published) -> LiveReading:
        """The reading as the snapshot keeps it, visible there from ``published`` (trio time)."""
        return LiveReading(
            self.meter.key,
            self.read_at,
            self.ok,
            self.telegrams,
            self.error,
            self.reply_ended,
            published,
        )


def meter_reading(meter, reply, read_at) -> MeterReading:
    """The reading of ``meter`` that ``reply`` (the master's ``ReadReply``, or the error that
    failed the read) makes at ``read_at``."""
    if isinstance(reply, Exception):
        return MeterReading(
            meter,
            read_at,
            False,
            error=describe(reply),
            attempts=getattr(reply, "attempts", 0),
            failure=type(reply),
        )
    return _decoded(meter, reply, read_at)


cdef MeterReading _decoded(meter, ReadReply reply, read_at):
    """Decode every telegram of a reply; a frame that does not decode fails the reading, but
    its raw bytes are kept (the store keeps raw telegrams to re-decode later). Its attempts are
    the first try and the retries (health and the meter log show the retries: none for a clean
    read, however many requests its telegrams took)."""
    cdef object attempts = reply.retries + 1
    cdef double duration = reply.duration
    try:
        telegrams = tuple([decode(frame) for frame in reply.frames])
    except MBusError as exc:
        return MeterReading(
            meter,
            read_at,
            False,
            reply.frames,
            (),
            attempts,
            duration,
            reply.finished,
            describe(exc),
            failure=type(exc),
        )
    status = telegrams[0].header.status if telegrams else None
    return MeterReading(
        meter,
        read_at,
        bool(telegrams),
        reply.frames,
        telegrams,
        attempts,
        duration,
        reply.finished,
        None if telegrams else "no telegram",
        status,
    )
