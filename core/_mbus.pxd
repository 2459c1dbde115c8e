from libc.stdint cimport uint8_t, uint16_t


cdef extern from "_mbus.h" nogil:
    uint16_t mbus_crc16(const uint8_t* data, size_t n)
    uint8_t mbus_sum8(const uint8_t* data, size_t n)
    int mbus_lvar_size(uint8_t lvar)
