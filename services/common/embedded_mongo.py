"""The embedded MongoDB-compatible server: ``mongoeco`` over the wire, on a SQLite file.

Run by ``services.common.storage`` as a child process under a Python 3.13 interpreter (mongoeco
needs 3.13, durable-rules needs 3.11 or 3.12), so this file imports only the standard library and
mongoeco. It prints one JSON line ``{"uri": ...}`` on stdout when it accepts connections, and
stops cleanly when its standard input closes (the parent exited, even by a crash) or on SIGTERM.

    python3.13 embedded_mongo.py --path var/zeroerrand.sqlite3 [--host 127.0.0.1] [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys


async def serve(path: str, host: str, port: int) -> None:
    from mongoeco.engines.sqlite import SQLiteEngine
    from mongoeco.wire import AsyncMongoEcoProxyServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def watch_parent() -> None:
        # EOF on stdin: the parent is gone; never outlive it holding the file and the port
        await loop.run_in_executor(None, sys.stdin.buffer.read)
        stop.set()

    watcher = asyncio.create_task(watch_parent())
    async with AsyncMongoEcoProxyServer(engine=SQLiteEngine(path), host=host, port=port) as server:
        print(json.dumps({"uri": server.address.uri}), flush=True)
        await stop.wait()
    watcher.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description="zero-errand embedded MongoDB-compatible server (mongoeco)")
    parser.add_argument("--path", required=True, help="SQLite file holding the data")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    asyncio.run(serve(args.path, args.host, args.port))


if __name__ == "__main__":
    main()
