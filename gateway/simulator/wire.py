"""What the master's receiver makes of several meters sending at once.

On wired M-Bus a meter sends a 0 bit (space) by drawing more current; the master sees a space
whenever any meter draws it, so overlapping transmissions combine as the bitwise AND of their
11-bit characters (start 0, 8 data bits LSB first, even parity, stop 1; the idle line is 1).
The master's UART then frames the combined level: it waits for a falling edge, samples the
data bits, and on a missing stop bit (framing error) delivers 0x00 and waits for the line to go
idle again (Linux does so for a port opened without INPCK/PARMRK, as pyserial opens it).
Identical answers that start in the same bit time therefore merge into one clean answer (the
well-known "two E5 look like one" case); anything else turns into garbage.
"""

from __future__ import annotations

from collections.abc import Sequence

BITS_PER_CHAR = 11


def char_bits(byte: int) -> list[int]:
    data = [(byte >> i) & 1 for i in range(8)]
    return [0, *data, sum(data) & 1, 1]


def byte_times(start: float, data: bytes, bit_time: float) -> list[tuple[float, int]]:
    """When each byte of one transmission has been received (end of its stop bit)."""
    char = BITS_PER_CHAR * bit_time
    return [(start + (i + 1) * char, b) for i, b in enumerate(data)]


def merge(transmissions: Sequence[tuple[float, bytes]], bit_time: float) -> list[tuple[float, int]]:
    """The bytes (with their reception times) the master receives from overlapping
    transmissions ``(start, data)``."""
    if len(transmissions) == 1:
        start, data = transmissions[0]
        return byte_times(start, data, bit_time)
    base = min(start for start, _ in transmissions)
    total = max(
        round((start - base) / bit_time) + BITS_PER_CHAR * len(data)
        for start, data in transmissions
    )
    level = [1] * (total + 1)
    for start, data in transmissions:
        at = round((start - base) / bit_time)
        for byte in data:
            for k, bit in enumerate(char_bits(byte)):
                if not bit:
                    level[at + k] = 0
            at += BITS_PER_CHAR
    out: list[tuple[float, int]] = []
    i = 0
    while i + BITS_PER_CHAR <= total:
        if level[i]:
            i += 1
            continue
        stop = level[i + 10]
        value = sum(level[i + 1 + k] << k for k in range(8)) if stop else 0x00
        out.append((base + (i + BITS_PER_CHAR) * bit_time, value))
        i += BITS_PER_CHAR if stop else 10
        while not stop and i < total and not level[i]:
            i += 1  # a framing error: wait for the line to return to idle
    return out
