"""M-Bus checksums: the 8-bit arithmetic sum of EN 13757-2 and the CRC-16 of EN 13757-4."""

from libc.stdint cimport uint8_t

from _mbus cimport mbus_crc16, mbus_sum8


def sum8(const uint8_t[:] data not None) -> int:
    """The wired M-Bus checksum: the sum of the bytes modulo 256."""
    if data.shape[0] == 0:
        return 0
    return mbus_sum8(&data[0], <size_t>data.shape[0])


def crc16_en13757(const uint8_t[:] data not None) -> int:
    """The wireless M-Bus block CRC (EN 13757-4): CRC-16/EN-13757."""
    if data.shape[0] == 0:
        return 0xFFFF
    return mbus_crc16(&data[0], <size_t>data.shape[0])
