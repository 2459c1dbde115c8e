# cython: language_level=3
"""The C level of the exchange protocol, for a compiled driver (``gateway/lineloop.pyx``): the
hot phases of an exchange (the gap before a request that is already decided, the request's
send, and receiving a frame until it is complete) run on C data, without the GIL. Whatever
needs a decision of the job (a complete frame, a garble, a deadline) goes back to the
Python level of the same protocol."""

cdef struct Rx:
    # the request, whose echo some converters send back
    const unsigned char *expected
    Py_ssize_t expected_len
    Py_ssize_t matched
    bint echo_active
    bint echo_seen
    # what came after echo removal; ``parsed`` of it went to the frame parser
    unsigned char *buf
    Py_ssize_t count
    Py_ssize_t capacity
    Py_ssize_t parsed
    Py_ssize_t remaining  # bytes still missing from the long frame being received
    double char_time
    double char_gap
    double window_end
    double bound
    double deadline
    double pace_until
    double first_at
    double last_at
    bint strict
    int expect  # EXPECT_*: the kind of frame that ends the reception at once
    bint started
    bint done
    bint garbled
    bint overrun
    bint capped

# what ``rx_take`` and ``BusProtocol.fast_receive`` found
cdef enum:
    RX_NOTHING = 0  # no byte of an answer (an echo, or stray bytes counted)
    RX_TAKEN = 1
    RX_MORE = 2  # the rest of a long frame is still on the wire (until ``pace_until``)
    RX_PARSE = 4  # the frame parser must see the bytes: the Python level goes on
    RX_NOMEM = 8
    RX_DONE = 16  # the bytes are one valid frame of the expected kind: the answer is in

# the answer a reception expects (``expect_ack`` True, False, None)
cdef enum:
    EXPECT_RSP_UD = 0
    EXPECT_ACK = 1
    EXPECT_ANY = 2

# what ``BusProtocol.fast_phase`` allows a driver to do without the GIL
cdef enum:
    FAST_NONE = 0
    FAST_GAP = 1  # wait until ``fast_wake``, counting stray bytes, then ``fast_send``
    FAST_RECEIVE = 2  # feed ``fast_receive`` until ``fast_wake``

cdef int rx_take(Rx *rx, double at, const unsigned char *data, Py_ssize_t n) noexcept nogil


cdef class Reception:
    cdef Rx rx
    cdef bytes _request
    cdef object _parser  # made when the bytes need it (not for a clean answer)
    cdef object _expect_ack
    cdef list _events

    cdef void reset(self, bytes request, double char, double char_gap, expect_ack, bint strict)
    cdef bint taken(self, int flags, double at) except -1
    cdef void _feed_parser(self)


cdef class BusProtocol:
    cdef object _more_follows
    cdef public object stats
    cdef public object links
    cdef dict _fcb
    cdef object _job
    cdef object _read  # the job, when it is a read (``_Read``: its state machine is compiled)
    cdef Reception _spare  # the line's reception, ready for the next exchange
    cdef public bint report_exchanges
    cdef public bint report_progress
    cdef int _phase
    cdef list _events
    cdef bytes _output
    cdef bint _out_pending  # the request in hand is to be written
    # the exchange in hand
    cdef bytes _request
    cdef object _times
    cdef object _expect_ack
    cdef bint _strict
    cdef Reception _reception
    cdef Rx *_rx
    cdef object _resolved  # the times the next four were read from
    cdef double _char, _char_gap, _no_answer, _gap
    cdef double _sent_at, _request_end, _wake, _settle_bound
    cdef double _at  # the time of the job's step in hand: what a job reads as "now"
    cdef Py_ssize_t _sent_stray, _unbooked_stray
    # the line
    cdef public double quiet_at  # when the line's last activity ended
    cdef public double ready_at  # when the next request may go out (the gap after it)
    cdef double _stray_at
    cdef Py_ssize_t _stray
    cdef bint _garbled
    cdef bytearray _heard

    cdef int fast_phase(self) noexcept nogil
    cdef double fast_wake(self) noexcept nogil
    cdef const unsigned char *fast_send(self, double now, Py_ssize_t *length) noexcept nogil
    cdef int fast_receive(self, const unsigned char *data, Py_ssize_t n, double now) noexcept nogil
    cdef Py_ssize_t fast_remaining(self) noexcept nogil
    cdef double fast_pace_until(self) noexcept nogil
    cdef bint received(self, int flags, double at) except -1
    cdef bytes fast_output(self)
    cdef list fast_events(self)

    cdef _advance(self, double now)
    cdef _exchange(self, bytes request, times, expect_ack, bint strict, double now)
    cdef _after_gap(self, double now)
    cdef _settle(self, double now)
    cdef void _send(self, double now) noexcept nogil
    cdef _end_exchange(self, double now)
    cdef void _book_stray(self)
