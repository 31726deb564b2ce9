"""Names no device may take: the platform's own MQTT identities, and a few more.

A device's id is its MQTT username and a level of its topics, and the broker's ACL lets
every user write ``<prefix>/%u/readings|pack|status``. So a device registered under a
service identity's name (``ingester``) would own that identity's topics, and a service
identity publishing to "its" topics would look like a device. Both are closed: the
registry refuses these ids (API 422, CLI and bulk import errors naming the id), and the
generated ACL denies every service identity the topics of every reserved name
(:func:`acl_denies`), so neither side can be used even if the other were opened
(docs/security.md, "Service identities").

Reserved names are compared case-insensitively: MQTT usernames are case-sensitive, but a
look-alike (``Ingester``) is refused all the same, so no one can pass for the service in
a log or a dashboard.
"""

from __future__ import annotations

from collections.abc import Iterable

from sensornet.broker_files import CANARY_USER
from sensornet.errors import SensornetError
from sensornet.settings import Settings
from sensornet.topics import TOPIC_KINDS

#: The default names of the service identities (SENSORNET_MQTT_INGEST_USER,
#: SENSORNET_MQTT_FLEET_USER), kept reserved even where a deployment renamed them, plus
#: names that read as the platform or the broker itself.
BUILTIN_RESERVED: frozenset[str] = frozenset(
    {
        "ingester",
        "simulator",
        "sensornet",
        "platform",
        "broker",
        "mosquitto",
        "admin",
        "root",
        "system",
        "api",
        "health",
        "grafana",
        "alarms",
    }
)


class ReservedIdError(SensornetError):
    """A device id that is a service identity's name or otherwise reserved."""


def reserved_ids(settings: Settings) -> frozenset[str]:
    """The built-in names plus this deployment's service usernames, lower-cased."""
    names = {*BUILTIN_RESERVED, settings.mqtt_ingest_user, settings.mqtt_fleet_user}
    return frozenset(n.lower() for n in names)


def service_users(ingest_user: str, fleet_user: str | None = None) -> frozenset[str]:
    """The platform's own MQTT logins: the ingester, the delivery canary and, where it
    exists, the fleet identity."""
    return frozenset({ingest_user, CANARY_USER} | ({fleet_user} if fleet_user else set()))


def service_names(ingest_user: str, fleet_user: str | None = None) -> frozenset[str]:
    """Whose device topics a service identity is denied: the reserved names and the
    service users."""
    return BUILTIN_RESERVED | service_users(ingest_user, fleet_user)


def check_device_id(device_id: str, reserved: Iterable[str] = BUILTIN_RESERVED) -> None:
    """Raise :class:`ReservedIdError` when ``device_id`` may not name a device."""
    if device_id.lower() in {r.lower() for r in reserved}:
        raise ReservedIdError(
            f"id {device_id!r} is reserved for the platform's own identities (its MQTT "
            f"username would be a service's); choose another id"
        )


def acl_denies(prefix: str, names: Iterable[str]) -> str:
    """``topic deny`` lines for the device topics of ``names``, to put under each service
    user's ``user`` line. Mosquitto checks a user's own entries, denials first, before the
    ``pattern`` lines, so these beat ``pattern write <prefix>/%u/...`` (and a fleet
    identity's ``topic write <prefix>/#``); a denial also forbids reading, which costs
    nothing: nobody may write these topics."""
    return "".join(
        f"topic deny {prefix}/{name}/{kind}\n"
        for name in sorted(set(names))
        for kind in TOPIC_KINDS
    )
