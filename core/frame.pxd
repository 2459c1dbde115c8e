# cython: language_level=3
from libc.stdint cimport uint8_t

# The length of the valid frame at ``p`` (``avail`` bytes there): an E5, a short or a long
# frame with its checksum and stop byte right; 0 while it is the incomplete start of one,
# -1 when the bytes are not a valid frame (``FrameParser`` says why).
cdef Py_ssize_t frame_at(const uint8_t* p, Py_ssize_t avail) noexcept nogil
