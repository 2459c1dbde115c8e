# cython: language_level=3
"""The native bus driver's exchange loop, compiled: it runs one job of a line's ``BusProtocol``
over the line's descriptor from an OS thread.

The protocol (``mbusgw.core.busproto``) stays the only place where the exchange is decided; this
loop only moves bytes and time: it writes what the protocol gives, waits in ``poll(2)`` with the
GIL released until the line has bytes or the protocol's deadline has come, reads them into a
buffer of its own, and feeds them with the time. The hot phases run entirely without the GIL,
through the protocol's C level (``busproto.pxd``): the gap before a request the job has already
decided, its write, stray bytes in the gap, and the answer while its bytes are the start of one
frame (a long frame's rest held back by ``SO_RCVLOWAT`` where the line is TCP, else slept
for). The GIL is taken once a whole frame is in (or the bytes are anything else, or a deadline
has come), so an exchange costs its system calls and one step of the protocol's Python level.

The times are the trio clock's: trio's system clock is ``CLOCK_MONOTONIC`` plus an offset, read
here without the interpreter; any other clock (a test's) is asked through Python.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, errno
from libc.math cimport ceil
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, nanosleep, timespec
from posix.unistd cimport read, write

from mbusgw.core.busproto cimport (
    FAST_NONE,
    FAST_RECEIVE,
    RX_DONE,
    RX_MORE,
    RX_NOMEM,
    RX_PARSE,
    BusProtocol,
)

import math
import os
import time

from mbusgw.core.busproto import Done, Failed

cdef extern from "<sys/socket.h>" nogil:
    int setsockopt(int fd, int level, int name, const void *value, unsigned int length)
    enum:
        SOL_SOCKET
        SO_RCVLOWAT

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    ctypedef unsigned long nfds_t
    int poll(pollfd *fds, nfds_t nfds, int timeout)
    enum:
        POLLIN
        POLLOUT
        POLLERR
        POLLHUP
        POLLNVAL

cdef enum:
    CHUNK = 4096  # what one read takes: more than the longest frame (261 bytes)

# why the loop's part without the GIL (``_fast``) returned
cdef enum:
    GIL_NEEDED = 0  # the protocol's Python level decides next
    GIL_PARSE = 1  # a chunk was taken: ``BusProtocol.received`` goes on with it
    GIL_WAKE = 2  # the wake descriptor was written
    GIL_EOF = 3
    GIL_ERROR = 4  # ``errno`` of the failed call is in ``_Fast.error``


cdef struct _Fast:
    int fd
    int wake_fd
    double offset  # CLOCK_MONOTONIC + offset is the trio clock
    bint lowat  # the line is a socket that takes SO_RCVLOWAT
    int threshold  # the SO_RCVLOWAT set now (1: none)
    int flags  # of the chunk left to ``received``
    double at  # when it came
    int error

cdef double INF = math.inf


class Stopped(Exception):
    """The loop was woken and its driver is stopping: the job in hand is left undone."""


cdef class LineClock:
    """The trio clock, readable from a thread. ``clock`` is the trio run's clock."""

    cdef object _clock
    cdef double _offset
    cdef bint _native

    def __init__(self, clock):
        self._clock = clock
        offset = getattr(clock, "offset", None)
        # trio's SystemClock: current_time() is offset + perf_counter(), i.e. CLOCK_MONOTONIC
        self._native = (
            type(offset) is float
            and abs(clock.current_time() - (offset + time.perf_counter())) < 1e-3
        )
        self._offset = offset if self._native else 0.0

    @property
    def native(self) -> bool:
        """The clock is read in C (False: through the clock object)."""
        return self._native

    cpdef double now(self):
        cdef timespec ts
        if not self._native:
            return self._clock.current_time()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return self._offset + ts.tv_sec + ts.tv_nsec * 1e-9


cdef bytes _read(int fd, char *buffer):
    """What is waiting on ``fd`` (b"": nothing yet). OSError when reading fails, EOFError when
    the other end closed the line."""
    cdef Py_ssize_t got
    while True:
        with nogil:
            got = read(fd, buffer, CHUNK)
        if got > 0:
            return PyBytes_FromStringAndSize(buffer, got)
        if got == 0:
            raise EOFError("closed by the other end")
        if errno == EINTR:
            continue
        if errno == EAGAIN:  # EWOULDBLOCK on Linux
            return b""
        raise OSError(errno, os.strerror(errno))


cdef void _write(int fd, bytes data) except *:
    """All of ``data`` on ``fd`` (waiting while the descriptor's buffer is full)."""
    cdef const char *start = PyBytes_AS_STRING(data)
    cdef Py_ssize_t left = PyBytes_GET_SIZE(data), sent
    cdef pollfd writable
    writable.fd = fd
    writable.events = POLLOUT
    while left > 0:
        with nogil:
            sent = write(fd, start, left)
        if sent >= 0:
            start += sent
            left -= sent
            continue
        if errno == EINTR:
            continue
        if errno != EAGAIN:
            raise OSError(errno, os.strerror(errno))
        with nogil:
            poll(&writable, 1, 1000)


cdef void _drain_wake(int fd) noexcept nogil:
    cdef char sink[64]
    while read(fd, sink, 64) > 0:
        pass


cdef void _sleep(double seconds) noexcept nogil:
    cdef timespec pause
    pause.tv_sec = <long>seconds
    pause.tv_nsec = <long>((seconds - pause.tv_sec) * 1e9)
    nanosleep(&pause, NULL)


cdef inline double _now(const _Fast *line) noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return line.offset + ts.tv_sec + ts.tv_nsec * 1e-9


cdef int _timeout(double deadline, double now) noexcept nogil:
    return <int>max(0.0, ceil((deadline - now) * 1000))


cdef void _threshold(_Fast *line, int count) noexcept nogil:
    """SO_RCVLOWAT ``count``: the line is not readable before that many bytes wait."""
    if line.threshold != count and setsockopt(
        line.fd, SOL_SOCKET, SO_RCVLOWAT, &count, sizeof(int)
    ) == 0:
        line.threshold = count


cdef int _write_all(_Fast *line, const unsigned char *data, Py_ssize_t left) noexcept nogil:
    cdef Py_ssize_t sent
    cdef pollfd writable
    writable.fd = line.fd
    writable.events = POLLOUT
    while left > 0:
        sent = write(line.fd, data, left)
        if sent >= 0:
            data += sent
            left -= sent
        elif errno == EAGAIN:
            poll(&writable, 1, 1000)
        elif errno != EINTR:
            line.error = errno
            return GIL_ERROR
    return GIL_NEEDED


cdef int _fast(BusProtocol protocol, _Fast *line, char *buffer) noexcept nogil:
    """The hot phases of the exchanges in hand, without the GIL: wait out the gap, write the
    request, and receive until the protocol needs its Python level (a chunk that is not the
    incomplete start of one frame, a deadline reached, another phase)."""
    cdef pollfd fds[2]
    cdef const unsigned char *request
    cdef Py_ssize_t length, got
    cdef double now, wake
    cdef int phase, ready, flags
    fds[0].fd = line.wake_fd
    fds[0].events = POLLIN
    fds[1].fd = line.fd
    fds[1].events = POLLIN
    while True:
        phase = protocol.fast_phase()
        if phase == FAST_NONE:
            return GIL_NEEDED
        wake = protocol.fast_wake()
        now = _now(line)
        if now >= wake:
            if phase == FAST_RECEIVE:
                if line.threshold == 1:
                    return GIL_NEEDED  # the protocol's ``tick``
                _threshold(line, 1)  # the rest of the frame did not all come: take what did
                wake = now
            else:
                request = protocol.fast_send(now, &length)
                if _write_all(line, request, length) != GIL_NEEDED:
                    return GIL_ERROR
                continue
        ready = poll(fds, 2, _timeout(wake, now))
        if ready < 0:
            if errno == EINTR:
                continue
            line.error = errno
            return GIL_ERROR
        if fds[0].revents:
            return GIL_WAKE
        if not fds[1].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL):
            continue
        got = read(line.fd, buffer, CHUNK)
        if got == 0:
            return GIL_EOF
        if got < 0:
            if errno == EINTR or errno == EAGAIN:
                continue
            line.error = errno
            return GIL_ERROR
        now = _now(line)
        flags = protocol.fast_receive(<const unsigned char *>buffer, got, now)
        if flags & (RX_DONE | RX_PARSE | RX_NOMEM):
            line.flags = flags
            line.at = now
            return GIL_PARSE
        if not flags & RX_MORE:
            _threshold(line, 1)
        elif line.lowat:
            # the rest of a long frame is still on the wire: not readable before it is in
            _threshold(line, <int>protocol.fast_remaining())
        else:
            wake = protocol.fast_pace_until() - _now(line)
            if wake > 0:
                _sleep(wake)


def drain(protocol, int fd, LineClock clock) -> None:
    """Feed the protocol what came on the line since the last exchange (late answers, noise: it
    counts them as stray), without waiting."""
    cdef char buffer[CHUNK]
    while True:
        data = _read(fd, buffer)
        if not data:
            return
        protocol.receive(data, clock.now())


def serve(protocol, int fd, int wake_fd, LineClock clock, dispatch, stopping, transport,
          bint lowat):
    """Run the job begun on ``protocol`` to its end on the line ``fd``.

    ``dispatch(events)`` passes the protocol's events on and returns the job's end (``Done`` or
    ``Failed``) once it is among them, which ``serve`` returns (``dispatch`` None: the events
    go nowhere, and ``serve`` finds the end among them itself). A byte on ``wake_fd`` wakes the
    wait; if ``stopping()`` is then true, ``Stopped`` is raised. ``transport`` is asked to hold
    the rest of a long frame back (``set_receive_threshold``; ``lowat``: ``fd`` is a socket that
    can, which the caller asks once); where it cannot, the loop sleeps until the rest can be
    there. OSError or EOFError: the line broke. The protocol's job is
    aborted whenever ``serve`` raises.
    """
    cdef char buffer[CHUNK]
    cdef pollfd fds[2]
    cdef double deadline, now, pause
    cdef int timeout, ready, code
    cdef bint threshold = False
    # the hot phases run without the GIL where the time can be read without it
    cdef bint fast = clock._native and isinstance(protocol, BusProtocol)
    cdef BusProtocol native = protocol if fast else None
    cdef _Fast line
    line.fd = fd
    line.wake_fd = wake_fd
    line.offset = clock._offset
    line.lowat = fast and lowat
    line.threshold = 1
    fds[0].fd = wake_fd
    fds[0].events = POLLIN
    fds[1].fd = fd
    fds[1].events = POLLIN
    try:
        while True:
            out = native.fast_output() if fast else protocol.take_output()
            if out:
                _write(fd, out)
            events = native.fast_events() if fast else protocol.pop_events()
            if events:  # most wake-ups bring none: no call into Python for them
                ended = _job_end(events) if dispatch is None else dispatch(events)
                if ended is not None:
                    return ended
            if fast:
                with nogil:
                    code = _fast(native, &line, buffer)
                _threshold(&line, 1)
                if code == GIL_PARSE:
                    native.received(line.flags, line.at)
                    continue
                if code == GIL_WAKE:
                    with nogil:
                        _drain_wake(wake_fd)
                    if stopping():
                        raise Stopped
                    continue
                if code == GIL_EOF:
                    raise EOFError("closed by the other end")
                if code == GIL_ERROR:
                    raise OSError(line.error, os.strerror(line.error))
                # the protocol's Python level: one step of the loop below
            deadline = protocol.deadline
            if deadline == INF:
                timeout = -1
            else:
                timeout = <int>max(0.0, ceil((deadline - clock.now()) * 1000))
            with nogil:
                ready = poll(fds, 2, timeout)
            if ready < 0:
                if errno == EINTR:
                    continue
                raise OSError(errno, os.strerror(errno))
            if fds[0].revents:
                with nogil:
                    _drain_wake(wake_fd)
                if stopping():
                    raise Stopped
            data = b""
            if fds[1].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL):
                data = _read(fd, buffer)
            now = clock.now()
            if not data:
                if threshold and protocol.receiving and now >= deadline:
                    # the stream held back an incomplete rest of a frame: take what is there
                    threshold = _release(transport, threshold)
                    data = _read(fd, buffer)
                if not data:
                    if now >= deadline:
                        protocol.tick(now)
                        if not protocol.receiving:
                            threshold = _release(transport, threshold)
                    continue
            if not protocol.receive(data, now):
                threshold = _release(transport, threshold)
            elif transport.set_receive_threshold(protocol.remaining):
                threshold = True
            else:
                # the rest of a long frame is still on the wire: let it gather
                pause = protocol.pace_until - clock.now()
                if pause > 0:
                    with nogil:
                        _sleep(pause)
    except BaseException:
        protocol.abort()  # the line broke, or the driver stops
        raise
    finally:
        _threshold(&line, 1)
        _release(transport, threshold)


cdef object _job_end(list events):
    for event in events:
        if type(event) is Done or type(event) is Failed:
            return event
    return None


cdef bint _release(transport, bint threshold) except -1:
    if threshold:
        transport.set_receive_threshold(1)
    return False
