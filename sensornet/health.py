"""Device health: what a device or its network says about its own state (radio link,
battery), kept beside its readings in one measurement, never a reason to refuse them."""

from __future__ import annotations

from collections.abc import Mapping

from sensornet.lineprotocol import FieldValue, encode_point
from sensornet.registry.store import DeviceInfo

HEALTH_MEASUREMENT = "device_health"


def health_line(device: DeviceInfo, fields: Mapping[str, FieldValue], ts_ns: int) -> str:
    """One ``device_health`` point, tagged as the device's readings are."""
    tags = {"sensor_id": device.id, "subdistrict": device.subdistrict}
    return encode_point(HEALTH_MEASUREMENT, tags, dict(fields), ts_ns)
