"""The work of ``mbusgw listen`` (the command and its options: ``listen.py``), imported only
when the command runs."""

from __future__ import annotations

import argparse
import logging
from typing import TextIO

import trio

from mbusgw.core.jsonout import dumps
from mbusgw.core.wireless_decoder import WirelessDecoder, outcome_of
from mbusgw.gateway.commands._decode import load_keys, print_wireless
from mbusgw.gateway.compact_layouts import shipped_compact_layouts
from mbusgw.gateway.receivers import RadioFrame, make_receiver
from mbusgw.gateway.receivers.service import WirelessService


async def listen(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        receivers = [
            make_receiver(spec, link_mode=args.link_mode) for spec in dict.fromkeys(args.receivers)
        ]
        keys = load_keys(args, err)
    except ValueError as error:
        print(error, file=err)
        return 2
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("mbusgw.receivers").addHandler(handler)
    logging.getLogger("mbusgw.receivers").setLevel(logging.INFO)
    printed = 0
    with trio.CancelScope() as scope:

        def on_telegram(telegram, frame: RadioFrame) -> None:
            nonlocal printed
            if args.json:
                print(dumps({**telegram.to_dict(), "receiver": frame.receiver}), file=out)
            else:
                print(f"{frame.receiver}:", file=out)
                print_wireless(telegram, out)
            out.flush()
            printed += 1
            if args.count and printed >= args.count:
                scope.cancel()

        def on_error(error, frame: RadioFrame) -> None:
            reason = outcome_of(error).replace("_", " ")
            print(f"{frame.receiver}: {reason}: {error}", file=err)

        service = WirelessService(
            receivers,
            WirelessDecoder(keys=keys, known_layouts=shipped_compact_layouts()),
            on_telegram,
            silence_timeout=args.silence,
            dedupe_window=args.dedupe,
            on_error=on_error,
        )
        await service.run()
    logging.getLogger("mbusgw.receivers").removeHandler(handler)
    return 0
