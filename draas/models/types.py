"""Small value types shared by the configuration models: durations, slugs, sizes."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, StringConstraints

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> Any:
    """Accept ``"30s"``, ``"15m"``, ``"4h"``, ``"3d"``, ``"4w"`` or a number of seconds.

    Anything else is passed on unchanged so pydantic reports it with its own message.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        # ValueError, not TypeError: pydantic turns only ValueError into a field error.
        raise ValueError("expected a duration such as 30s, 15m, 4h, 3d or 4w")  # noqa: TRY004
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration such as 30s, 15m, 4h, 3d or 4w")
        return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of ``value`` in one unit (``"4w"``, ``"36h"``, ``"90s"``)."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def describe_duration(value: timedelta) -> str:
    """A readable mixed-unit spelling: ``4h32m54s``, ``6s``, ``2d3h``."""
    seconds = round(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def _positive(value: timedelta) -> timedelta:
    if value.total_seconds() <= 0:
        raise ValueError("must be longer than zero")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_positive),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A positive duration written as ``<number><s|m|h|d|w>`` in YAML."""

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")]
"""Lower-case identifier usable in device names, folder names and URLs."""

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
"""A machine, VLAN, VRF or object name as the devices and vCenter accept it."""

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    if not _EMAIL_RE.match(value):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value.lower()


Email = Annotated[str, AfterValidator(_email)]

GB_PER_TB = 1000
"""Sizes are decimal: the design guide's "1 TB/day" is 1000 GB/day here."""
