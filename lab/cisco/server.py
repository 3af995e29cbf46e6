"""The Cisco lab process: one SSH listener per device plus an HTTP control API, one event loop.

Run as ``python -m lab.cisco.server --lab-config configs/lab.yaml --ready-file run/cisco.json``.
Every listener binds a free loopback port; the ready file (JSON, written atomically)
reports them: ``{"pid", "control_url", "devices": {name: port}}``.

Control API (for tests and the demo, never for the product):
``GET /devices``, ``GET /devices/{name}``, ``GET /devices/{name}/running?context=X``,
``GET /devices/{name}/startup?context=X`` (text), ``GET /devices/{name}/history``,
``POST /faults``, ``GET /faults``, ``DELETE /faults``, ``POST /reset``.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import os
import re
from pathlib import Path
from typing import Any

import asyncssh
import yaml
from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from lab.cisco.device import CliSession, Device, Fault, Terminal
from lab.http import bind_loopback, start_app, write_ready

log = logging.getLogger("lab.cisco")


def build_devices(cisco_cfg: dict[str, Any]) -> dict[str, Device]:
    """Devices from the ``cisco`` section of the lab config."""
    devices: dict[str, Device] = {}
    for index, spec in enumerate(cisco_cfg["devices"]):
        devices[spec["name"]] = Device(spec, index, username=cisco_cfg["username"],
                                       password=cisco_cfg["password"], secret=cisco_cfg["enable_secret"])
    return devices


# --------------------------------------------------------------------------- SSH

class _SshServer(asyncssh.SSHServer):
    """Password authentication against the device's lab credentials."""

    def __init__(self, device: Device) -> None:
        self.device = device

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return hmac.compare_digest(username, self.device.username) and \
            hmac.compare_digest(password, self.device.password)


async def _serve_session(process: asyncssh.SSHServerProcess[str], device: Device) -> None:
    """Drive one interactive session: echo keystrokes as they arrive, answer each line.

    The SSH server has no line editor: :class:`Terminal` echoes every character when it is
    read (as the real CLIs do), handles Backspace, and hands complete lines to the CLI.
    """
    terminal = Terminal(CliSession(device))
    process.stdout.write(terminal.greeting())
    try:
        while not terminal.closed:
            try:
                data = await process.stdin.read(65536)
            except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived, asyncssh.SignalReceived):
                continue
            if not data:
                break
            out = terminal.feed(data)
            if out:
                process.stdout.write(out)
    except (asyncssh.Error, ConnectionError, BrokenPipeError):
        pass
    finally:
        if not process.is_closing():
            try:
                process.exit(0)
            except (OSError, asyncssh.Error):
                pass


async def start_ssh(device: Device, host_key: asyncssh.SSHKey, host: str = "127.0.0.1",
                    port: int = 0) -> asyncssh.SSHAcceptor:
    """Listen for SSH sessions to ``device``; the acceptor knows its port."""

    async def process_factory(process: asyncssh.SSHServerProcess[str]) -> None:
        await _serve_session(process, device)

    return await asyncssh.create_server(
        lambda: _SshServer(device), host, port,
        server_host_keys=[host_key], process_factory=process_factory,
        line_editor=False, encoding="utf-8", keepalive_interval=0,
    )


# --------------------------------------------------------------------------- control API

class FaultRequest(BaseModel):
    """A fault to inject: the device rejects a config line with an error."""

    device: str = Field(description="device name from the lab config")
    context: str | None = Field(default=None, description="ASA context the fault applies to (any if unset)")
    on_line_matching: str | None = Field(default=None, description="regex a config line must match")
    after_lines: int = Field(default=0, ge=0, description="config lines to let through first")
    message: str | None = Field(default=None, description="error text the device prints")
    times: int = Field(default=1, ge=0, description="rejections before the fault clears (0: forever)")


def build_app(devices: dict[str, Device]) -> FastAPI:
    app = FastAPI(title="Cisco lab control API")

    def device(name: str) -> Device:
        if name not in devices:
            raise HTTPException(404, f"no device {name!r}")
        return devices[name]

    def config_text(name: str, context: str | None, which: str) -> str:
        dev = device(name)
        try:
            return dev.rendered(context, which)
        except KeyError:
            raise HTTPException(404, f"device {name!r} has no context {context!r}") from None

    @app.get("/devices")
    def list_devices() -> list[dict[str, Any]]:
        return [d.describe() for d in devices.values()]

    @app.get("/devices/{name}")
    def get_device(name: str) -> dict[str, Any]:
        return device(name).describe()

    @app.get("/devices/{name}/running", response_class=PlainTextResponse)
    def running(name: str, context: str | None = None) -> str:
        return config_text(name, context, "running")

    @app.get("/devices/{name}/startup", response_class=PlainTextResponse)
    def startup(name: str, context: str | None = None) -> str:
        return config_text(name, context, "startup")

    @app.get("/devices/{name}/history")
    def history(name: str) -> list[dict[str, Any]]:
        return list(device(name).history)

    @app.post("/faults")
    def add_fault(req: FaultRequest) -> dict[str, Any]:
        dev = device(req.device)
        try:
            pattern = re.compile(req.on_line_matching) if req.on_line_matching else None
        except re.error as exc:
            raise HTTPException(422, f"bad regex: {exc}") from None
        fault = Fault(context=req.context, pattern=pattern, after_lines=req.after_lines,
                      message=req.message, times=req.times)
        dev.faults.append(fault)
        return {"device": dev.name, **fault.describe()}

    @app.get("/faults")
    def list_faults() -> list[dict[str, Any]]:
        return [{"device": d.name, **f.describe()} for d in devices.values() for f in d.faults]

    @app.delete("/faults")
    def clear_faults() -> dict[str, int]:
        count = sum(len(d.faults) for d in devices.values())
        for d in devices.values():
            d.faults.clear()
        return {"cleared": count}

    @app.post("/reset")
    def reset() -> dict[str, list[str]]:
        for d in devices.values():
            d.reset()
        return {"reset": list(devices)}

    return app


# --------------------------------------------------------------------------- main

async def run(cisco_cfg: dict[str, Any], ready_file: Path, host: str = "127.0.0.1") -> None:
    devices = build_devices(cisco_cfg)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    acceptors = {name: await start_ssh(dev, host_key, host) for name, dev in devices.items()}
    ports = {name: acc.sockets[0].getsockname()[1] for name, acc in acceptors.items()}
    sock, control_port = bind_loopback(host)
    try:
        # uvicorn handles SIGTERM/SIGINT: it stops serving, then re-raises the signal.
        _server, serving = await start_app(build_app(devices), sock)
        write_ready(ready_file, {"pid": os.getpid(), "control_url": f"http://{host}:{control_port}",
                                 "devices": ports})
        log.warning("cisco lab ready: control port %s, devices %s", control_port, ports)
        await serving
    finally:
        for acc in acceptors.values():
            acc.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Cisco CLI emulator of the DRaaS lab")
    parser.add_argument("--lab-config", required=True, type=Path, help="the lab YAML (cisco section is used)")
    parser.add_argument("--ready-file", required=True, type=Path, help="JSON written once listening")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with open(args.lab_config) as f:
        cisco_cfg = yaml.safe_load(f)["cisco"]
    asyncio.run(run(cisco_cfg, args.ready_file))


if __name__ == "__main__":
    main()
