"""SenML units (RFC 8428 §12.1, RFC 8798 and the IANA "Secondary Units" registry) and the
conversions between them. Pure.

A unit is a dimension and a linear map to that dimension's base unit
(``base = value * factor + offset``), so any two units of one dimension convert, and units
of different dimensions never do: ``Far`` becomes ``Cel``, ``%RH`` never does.

Names are the registry's, case-sensitive (``Cel``, ``ug/m3``, ``hPa``). ``Far`` is not in
the registry; it is accepted because devices send it and its map to kelvin is exact (the
issue that brought SenML in was a ``{"u": "Far"}`` reading stored as degrees Celsius).
Units marked ``registered=False`` exist only so a catalogue quantity can name what it
stores (``MPa``, ``mg/m3``, ``mm/s`` have no registered name); a device may not send them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Unit:
    name: str
    dimension: str
    factor: float = 1.0
    offset: float = 0.0
    registered: bool = True


def _units(*units: Unit) -> dict[str, Unit]:
    return {u.name: u for u in units}


_KELVIN_AT_0_FAR = 459.67 * 5 / 9

UNITS: dict[str, Unit] = _units(
    # RFC 8428 §12.1 (primary units)
    Unit("m", "length"),
    Unit("kg", "mass"),
    Unit("g", "mass", 1e-3),
    Unit("s", "time"),
    Unit("A", "current"),
    Unit("K", "temperature"),
    Unit("cd", "luminous_intensity"),
    Unit("mol", "amount"),
    Unit("Hz", "frequency"),
    Unit("rad", "angle"),
    Unit("sr", "solid_angle"),
    Unit("N", "force"),
    Unit("Pa", "pressure"),
    Unit("J", "energy"),
    Unit("W", "power"),
    Unit("C", "charge"),
    Unit("V", "voltage"),
    Unit("F", "capacitance"),
    Unit("Ohm", "resistance"),
    Unit("S", "conductance"),
    Unit("Wb", "magnetic_flux"),
    Unit("T", "magnetic_flux_density"),
    Unit("H", "inductance"),
    Unit("Cel", "temperature", 1.0, 273.15),
    Unit("lm", "luminous_flux"),
    Unit("lx", "illuminance"),
    Unit("Bq", "activity"),
    Unit("Gy", "absorbed_dose"),
    Unit("Sv", "dose_equivalent"),
    Unit("kat", "catalytic_activity"),
    Unit("m2", "area"),
    Unit("m3", "volume"),
    Unit("l", "volume", 1e-3),
    Unit("m/s", "velocity"),
    Unit("m/s2", "acceleration"),
    Unit("m3/s", "flow"),
    Unit("l/s", "flow", 1e-3),
    Unit("W/m2", "irradiance"),
    Unit("cd/m2", "luminance"),
    Unit("bit", "information"),
    Unit("bit/s", "data_rate"),
    Unit("lat", "latitude"),
    Unit("lon", "longitude"),
    Unit("pH", "ph"),
    Unit("dB", "level"),
    Unit("dBW", "power_level"),
    Unit("Bspl", "sound_level", 10.0),  # bel; the level quantity is in dB
    Unit("count", "count"),
    Unit("/", "ratio"),
    Unit("%", "ratio", 1e-2),  # deprecated in the registry, still in use
    Unit("%RH", "relative_humidity"),
    Unit("%EL", "battery_percent"),
    Unit("EL", "battery_seconds"),
    Unit("1/s", "rate"),
    Unit("1/min", "rate", 1 / 60),
    Unit("beat/min", "rate", 1 / 60),
    Unit("beats", "count"),
    Unit("S/m", "conductivity"),
    # RFC 8798 §2 (primary units) and ISO 7027-1 turbidity
    Unit("B", "information", 8.0),
    Unit("VA", "apparent_power"),
    Unit("VAs", "apparent_energy"),
    Unit("var", "reactive_power"),
    Unit("vars", "reactive_energy"),
    Unit("J/m", "energy_per_distance"),
    Unit("kg/m3", "mass_concentration"),
    Unit("deg", "angle", math.pi / 180),
    Unit("NTU", "turbidity"),
    # RFC 8798 §3 (secondary units: a scale of a primary unit)
    Unit("ms", "time", 1e-3),
    Unit("min", "time", 60.0),
    Unit("h", "time", 3600.0),
    Unit("MHz", "frequency", 1e6),
    Unit("kW", "power", 1e3),
    Unit("kVA", "apparent_power", 1e3),
    Unit("kvar", "reactive_power", 1e3),
    Unit("Ah", "charge", 3600.0),
    Unit("Wh", "energy", 3600.0),
    Unit("kWh", "energy", 3.6e6),
    Unit("varh", "reactive_energy", 3600.0),
    Unit("kvarh", "reactive_energy", 3.6e6),
    Unit("kVAh", "apparent_energy", 3.6e6),
    Unit("Wh/km", "energy_per_distance", 3.6),
    Unit("KiB", "information", 8192.0),
    Unit("GB", "information", 8e9),
    Unit("Mbit/s", "data_rate", 1e6),
    Unit("B/s", "data_rate", 8.0),
    Unit("MB/s", "data_rate", 8e6),
    Unit("mV", "voltage", 1e-3),
    Unit("mA", "current", 1e-3),
    Unit("dBm", "power_level", 1.0, -30.0),
    Unit("ug/m3", "mass_concentration", 1e-9),
    Unit("mm/h", "velocity", 1 / 3_600_000),
    Unit("m/h", "velocity", 1 / 3600),
    Unit("ppm", "ratio", 1e-6),
    Unit("/100", "ratio", 1e-2),
    Unit("/1000", "ratio", 1e-3),
    Unit("hPa", "pressure", 100.0),
    Unit("mm", "length", 1e-3),
    Unit("cm", "length", 1e-2),
    Unit("km", "length", 1e3),
    Unit("km/h", "velocity", 1 / 3.6),
    # IANA Secondary Units added after RFC 8798
    Unit("ppb", "ratio", 1e-9),
    Unit("ppt", "ratio", 1e-12),
    Unit("VAh", "apparent_energy", 3600.0),
    Unit("mg/l", "mass_concentration", 1e-3),
    Unit("ug/l", "mass_concentration", 1e-6),
    Unit("g/l", "mass_concentration", 1.0),
    # Not registered: sent by devices although outside the registry (see the docstring)
    Unit("Far", "temperature", 5 / 9, _KELVIN_AT_0_FAR),
    # Not registered: what some catalogue quantities store; never accepted on the wire
    Unit("MPa", "pressure", 1e6, registered=False),
    Unit("mg/m3", "mass_concentration", 1e-6, registered=False),
    Unit("mm/s", "velocity", 1e-3, registered=False),
)


class UnitError(ValueError):
    """A value cannot be brought to the unit asked for; ``reason`` is a dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def wire_unit(name: str) -> Unit:
    """The unit a device named; ``senml_unknown_unit`` when it is not a SenML unit."""
    unit = UNITS.get(name)
    if unit is None or not unit.registered:
        raise UnitError("senml_unknown_unit", f"unit {name!r:.40} is not a SenML unit")
    return unit


def convert(value: float, source: str, target: str) -> float:
    """``value`` in ``source`` expressed in ``target`` (both unit names)."""
    if source == target:
        return value
    src, dst = wire_unit(source), UNITS[target]
    if src.dimension != dst.dimension:
        raise UnitError(
            "senml_unit_mismatch",
            f"{source} ({src.dimension}) cannot be converted to {target} ({dst.dimension})",
        )
    base = value * src.factor + src.offset
    # 12 significant digits: more than any sensor resolves, fewer than the float noise
    # of the scale factors (800 ug/m3 is 0.8 mg/m3, not 0.8000000000000002)
    return float(f"{(base - dst.offset) / dst.factor:.12g}")
