"""``mbusgw listen`` against a software-radio stream on loopback TCP (every test: fail_after)."""

from __future__ import annotations

import io
import json
from functools import partial

import trio

from mbusgw.gateway import cli
from mbusgw.gateway.commands._listen import listen

N21 = (
    "2E4493157856341233037A2A0020255923C95AAA26D1B2E7493B013EC4A6F6D3529B520EDFF0EA6DEFC99D6D69EBF3"
)
N21_KEY = "0102030405060708090A0B0C0D0E0F11"
PLAIN = "234433300602010014007A8E0400002F2F0EFD3A1147000000008E40FD3A341200000000"
# The OMS mode 7 example (ELL, AFL), for which no key is given.
MODE7 = (
    "434493157856341233038C2075900F002C25B30A000021924D4F2FB66E017A75002007109058475F4BC9"
    "1DF878B80A1B0F98B629024AAC727942BFC549233C0140829B93"
)


async def run_listen(argv: list[str], lines: list[str]) -> tuple[int, str, str]:
    async def serve(stream: trio.SocketStream) -> None:
        await stream.send_all("".join(line + "\n" for line in lines).encode())
        await trio.sleep_forever()

    out, err = io.StringIO(), io.StringIO()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            args = cli.build_parser().parse_args(["listen", f"tcp:127.0.0.1:{port}", *argv])
            status = await listen(args, out, err)
            nursery.cancel_scope.cancel()
    return status, out.getvalue(), err.getvalue()


async def test_listen_prints_decoded_telegrams_once_and_says_why_others_fail() -> None:
    status, out, err = await run_listen(
        ["--json", "--key", N21_KEY, "--count", "2"], [MODE7, N21, N21, PLAIN]
    )
    assert status == 0
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["header"]["id"] == "12345678" and first["link"]["decryption"] == "decrypted"
    assert second["header"]["manufacturer"] == "LAS"  # the repeated N21 was suppressed
    assert first["receiver"].startswith("tcp:127.0.0.1:")
    assert "wrong key: mode 7" in err


async def test_listen_refuses_bad_receivers_and_keys() -> None:
    args = cli.build_parser().parse_args(["listen", "serial:/dev/null"])
    err = io.StringIO()
    assert await listen(args, io.StringIO(), err) == 2
    assert "a receiver is" in err.getvalue()
    args = cli.build_parser().parse_args(["listen", "stdin", "--key", "00"])
    assert await listen(args, io.StringIO(), io.StringIO()) == 2
