"""One module per instrument family; ``DRIVERS`` maps a rig file's driver name to its class,
and :func:`open_instrument` opens, configures and identifies one."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from ..roles import InstrumentError, ScpiInstrument
from .bloomy_abs import BloomyAbs
from .itech_it_m3400 import ItechItM3400
from .keysight_34461a import Keysight34461a
from .keysight_34970a import Keysight34970a
from .keysight_e36xx import KeysightE36xx
from .korad_ka3005p import KoradKa3005p
from .rigol_dl3000 import RigolDl3000
from .siglent_sdl1000x import SiglentSdl1000x
from .siglent_spd3303x import SiglentSpd3303x

DRIVERS: dict[str, type[ScpiInstrument]] = {
    "rigol-dl3000": RigolDl3000,
    "siglent-sdl1000x": SiglentSdl1000x,
    "keysight-e36xx": KeysightE36xx,
    "siglent-spd3303x": SiglentSpd3303x,
    "korad-ka3005p": KoradKa3005p,
    "itech-it-m3400": ItechItM3400,
    "bloomy-abs": BloomyAbs,
    "keysight-34461a": Keysight34461a,
    "keysight-34970a": Keysight34970a,
}
"""Driver name (as a rig file writes it) -> its class."""

SIM_DEFINITIONS = Path(__file__).resolve().parent.parent / "sim" / "instruments.yaml"
"""pyvisa-sim devices for every driver: ``pyvisa.ResourceManager(f"{SIM_DEFINITIONS}@sim")``."""


def _configure_serial(resource: Any, settings: dict[str, Any]) -> None:
    """A serial resource gets the model's line settings; anything else is left alone."""
    from pyvisa import constants

    if getattr(resource, "interface_type", None) != constants.InterfaceType.asrl:
        return
    resource.baud_rate = settings["baud_rate"]
    resource.data_bits = settings["data_bits"]
    resource.parity = getattr(constants.Parity, settings["parity"])
    resource.stop_bits = getattr(constants.StopBits, settings["stop_bits"])


def open_instrument(driver: str, resource_name: str, rm: Any,
                    name: str = "", channel: int | None = None) -> ScpiInstrument:
    """Open ``resource_name`` with ``rm`` (a ``pyvisa.ResourceManager``) as a
    ``driver`` instrument: its terminations, timeout and (serial) line settings
    applied, its ``*IDN?`` checked against the model, its error queue emptied.
    InstrumentError (one line) for an unknown driver name, a resource that cannot be
    opened, another model, or errors already queued. ``channel``: the output of a
    supply with several (the drivers that take one: its ``channel`` argument)."""
    try:
        cls = DRIVERS[driver]
    except KeyError:
        raise InstrumentError(f"unknown instrument driver {driver!r} (known: "
                              f"{', '.join(sorted(DRIVERS))})") from None
    label = name or cls.DESCRIPTION
    kwargs: dict[str, Any] = {}
    if channel is not None:
        if "channel" not in inspect.signature(cls.__init__).parameters:
            raise InstrumentError(f"{label}: the {cls.DESCRIPTION or driver} has one output; "
                                  "give no channel")
        kwargs["channel"] = channel
    try:
        resource = rm.open_resource(resource_name)
    except Exception as exc:  # pyvisa.VisaIOError, ValueError for a malformed name
        raise InstrumentError(f"{label}: cannot open {resource_name!r}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                              ) from None
    try:
        settings = getattr(cls, "SERIAL", None)
        if settings:
            _configure_serial(resource, settings)
        instrument = cls(resource, name, **kwargs)
        instrument.identify()
        instrument.check_errors("*IDN?")
    except InstrumentError:
        _close(resource)
        raise
    except Exception as exc:
        _close(resource)
        raise InstrumentError(f"{label}: cannot set up {resource_name!r}: {exc}") from None
    return instrument


def _close(resource: Any) -> None:
    try:
        resource.close()
    except Exception:  # already gone: nothing left to release
        return


__all__ = ["DRIVERS", "SIM_DEFINITIONS", "open_instrument"]
