"""DevEUI: the 64-bit identifier of a LoRaWAN end device, in one canonical spelling.

Network servers, labels and spreadsheets spell the same EUI differently
(``70B3D57ED005B89A``, ``70-b3-d5-7e-d0-05-b8-9a``, ``70:B3:D5:...``). The registry keeps
one form, 16 upper-case hex digits (The Things Stack's and the LoRaWAN Backend
Interfaces' spelling; ChirpStack sends lower case), so a lookup by DevEUI is an exact
string match whatever spelling came in. Pure.
"""

from __future__ import annotations

import re

from sensornet.errors import SensornetError

_SEPARATORS = re.compile(r"[\s:\-_.]")
_HEX16 = re.compile(r"^[0-9A-F]{16}$")


class InvalidDevEui(SensornetError):
    """A DevEUI that is not 16 hex digits (after separators are removed)."""


def normalise_dev_eui(text: str) -> str:
    """``text`` as 16 upper-case hex digits; separators (``:`` ``-`` space ``.`` ``_``)
    between digits are accepted, anything else raises ``InvalidDevEui``."""
    if not isinstance(text, str):
        raise InvalidDevEui(f"DevEUI must be a string, got {type(text).__name__}")
    digits = _SEPARATORS.sub("", text.strip()).upper()
    if digits.startswith("0X"):
        digits = digits[2:]
    if not _HEX16.match(digits):
        raise InvalidDevEui(f"DevEUI {text!r:.60} is not 16 hexadecimal digits (64 bits)")
    return digits


def dev_eui_or_none(text: str) -> str | None:
    """The canonical form, or ``None`` for anything that is not a DevEUI (no exception):
    for the data path, where a bad id becomes a refusal with a reason of its own."""
    try:
        return normalise_dev_eui(text)
    except InvalidDevEui:
        return None
