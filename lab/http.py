"""Serving a lab simulator's ASGI app on loopback and announcing its port in a ready file."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import uvicorn


def write_ready(path: Path, data: dict[str, Any]) -> None:
    """Write the ready file atomically, so the launcher never reads half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def bind_loopback(host: str = "127.0.0.1", port: int = 0) -> tuple[socket.socket, int]:
    """A bound socket (port 0: any free port) and the port it got."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock, int(sock.getsockname()[1])


async def start_app(app: Any, sock: socket.socket) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Start uvicorn on ``sock`` in this loop; returns once it accepts connections."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("the lab HTTP server stopped while starting")
        await asyncio.sleep(0.02)
    return server, task


async def serve(app: Any, host: str, port: int, ready_file: Path | None) -> None:
    """Serve ``app`` on ``host:port`` (port 0: any free port), announce it, run until stopped."""
    sock, actual = bind_loopback(host, port)
    _server, task = await start_app(app, sock)
    if ready_file is not None:
        write_ready(ready_file, {"host": host, "port": actual, "pid": os.getpid(), "url": f"http://{host}:{actual}"})
    await task
