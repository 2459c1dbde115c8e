"""Just enough of telnet (RFC 854) to talk to a telnet client in line mode: option requests
are refused politely (``DO x`` → ``WONT x``, ``WILL x`` → ``DONT x``), subnegotiations and
other commands are dropped, and the bytes left are cut into lines at CR LF, CR NUL or LF. A
client that never negotiates (netcat, a script) just sends lines."""

from __future__ import annotations

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
MAX_LINE = 4096  # longer lines are refused: nothing the command language needs is that long


class LineTooLong(ValueError):
    pass


class TelnetLines:
    """Feed received bytes in; get the complete lines and the replies owed to the client."""

    def __init__(self) -> None:
        self._state = "data"  # data | iac | option | sb | sb_iac
        self._verb = 0
        self._line = bytearray()
        self._after_cr = False
        self.negotiated = False  # the client spoke telnet at least once

    def feed(self, data: bytes) -> tuple[list[str], bytes]:
        lines: list[str] = []
        replies = bytearray()
        for byte in data:
            state = self._state
            if state == "data":
                if byte == IAC:
                    self._state = "iac"
                else:
                    self._data(byte, lines)
            elif state == "iac":
                self.negotiated = True
                if byte == IAC:  # an escaped 255 is a data byte
                    self._state = "data"
                    self._data(byte, lines)
                elif byte in (DO, DONT, WILL, WONT):
                    self._verb, self._state = byte, "option"
                elif byte == SB:
                    self._state = "sb"
                else:  # NOP, GA, AYT, …: nothing a line session needs
                    self._state = "data"
            elif state == "option":
                # refuse what is asked; a DONT or WONT needs no answer (answering would loop)
                if self._verb == DO:
                    replies += bytes((IAC, WONT, byte))
                elif self._verb == WILL:
                    replies += bytes((IAC, DONT, byte))
                self._state = "data"
            elif state == "sb":
                if byte == IAC:
                    self._state = "sb_iac"
            else:  # sb_iac
                self._state = "data" if byte == SE else "sb"
        return lines, bytes(replies)

    def _data(self, byte: int, lines: list[str]) -> None:
        if self._after_cr:
            self._after_cr = False
            if byte in (0, 10):  # CR NUL and CR LF end one line, not two
                return
        if byte in (13, 10):
            self._after_cr = byte == 13
            lines.append(self._line.decode("utf-8", "replace"))
            self._line.clear()
            return
        if byte in (8, 127):  # a backspace a raw client sends
            del self._line[-1:]
            return
        self._line.append(byte)
        if len(self._line) > MAX_LINE:
            self._line.clear()
            raise LineTooLong(f"a line is longer than {MAX_LINE} bytes")


def escaped(text: str) -> bytes:
    """Text to send: CR LF line ends, a 255 byte doubled."""
    data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    return data.replace(bytes((IAC,)), bytes((IAC, IAC)))
