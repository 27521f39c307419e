#!/usr/bin/env python3
"""Hostile load for scripts/bench-edge: keeps N connections open against the edge.

Half are silent (connect, send nothing), half are slow bodies (a Terra head that
passes every check the edge can make without the body: fresh `t`, a well-formed but
wrong v1, Content-Length 1 MiB; then one byte a second). Whenever the edge closes
one, it is reopened at once, as an attacker would. Runs until SIGTERM, then prints
one `HOSTILE` line with what happened.

usage: hostile.py HOST PORT CONNECTIONS
"""

import asyncio
import signal
import sys
import time

HOST, PORT, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stats = {"opened": 0, "closed_by_edge": 0, "connect_errors": 0, "answered_408": 0, "answered_other": 0}
open_now = 0


def slow_head() -> bytes:
    return (
        f"POST /webhooks/terra HTTP/1.1\r\nHost: bench\r\n"
        f"terra-signature: t={int(time.time())},v1={'ab' * 32}\r\n"
        f"Content-Length: 1048576\r\n\r\n{{\"type\":"
    ).encode()


async def one(kind: str, stop: asyncio.Event) -> None:
    global open_now
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(HOST, PORT)
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.1)
            continue
        stats["opened"] += 1
        open_now += 1
        try:
            if kind == "slow":
                writer.write(slow_head())
                await writer.drain()

            async def drip() -> None:
                while kind == "slow":
                    await asyncio.sleep(1.0)
                    writer.write(b" ")
                    await writer.drain()

            dripper = asyncio.create_task(drip())
            reading = asyncio.create_task(reader.read(1 << 16))
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            dripper.cancel()
            if reading in done:
                data = reading.result() if not reading.exception() else b""
                if data.startswith(b"HTTP/1.1 408"):
                    stats["answered_408"] += 1
                elif data:
                    stats["answered_other"] += 1
                stats["closed_by_edge"] += 1
            else:
                reading.cancel()
            stopping.cancel()
        except OSError:
            stats["closed_by_edge"] += 1
        finally:
            open_now -= 1
            writer.close()


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    tasks = [asyncio.create_task(one("silent" if i % 2 == 0 else "slow", stop)) for i in range(N)]
    lowest = N
    started = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.5)
        if not stop.is_set() and time.monotonic() - started > 3:
            lowest = min(lowest, open_now)
    await asyncio.gather(*tasks, return_exceptions=True)
    print("HOSTILE " + " ".join(f"{k}={v}" for k, v in stats.items()) + f" min_open={lowest}", flush=True)


asyncio.run(main())
