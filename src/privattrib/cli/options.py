"""Options shared by several verbs, checked before any work starts."""

from __future__ import annotations

import re
from typing import Optional

import typer

from privattrib.common import DEVICE_PATTERN

DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"


def _device_name(value: Optional[str]) -> Optional[str]:
    if value is not None and not re.match(DEVICE_PATTERN, value):
        raise typer.BadParameter(f"{value!r} is not a device; use {DEVICE_NAMES}")
    return value


def _usable_device(value: Optional[str]) -> Optional[str]:
    from privattrib.experiments.runner import check_local_device

    _device_name(value)
    if value is not None:
        try:
            check_local_device(value)
        except RuntimeError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


def device_option(default: Optional[str] = "auto", help: str = "where to compute", *, here: bool = True):
    """``--device``: refused at once, with the allowed names, when it is not a device name or (with
    ``here``, for verbs that compute in this process) when this machine cannot use it."""
    return typer.Option(default, "--device", help=f"{help}: {DEVICE_NAMES}",
                        callback=_usable_device if here else _device_name)
