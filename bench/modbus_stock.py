"""The stock pymodbus TCP server, the peer of bench_modbus's throughput ratio: a static
datastore in plain asyncio, in a process of its own like the gateway's server.

``python -m bench.modbus_stock`` prints the port it listens on (127.0.0.1) and serves until
its standard input closes.
"""

from __future__ import annotations

import asyncio
import sys

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


async def main() -> None:
    device = SimDevice(0, simdata=[SimData(0, count=65000, values=7, datatype=DataType.REGISTERS)])
    server = ModbusTcpServer(device, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    print(server.transport.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
