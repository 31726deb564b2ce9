"""What a login may do on RabbitMQ, as the platform answers its HTTP auth backend.

Pure decisions over the four questions ``rabbitmq_auth_backend_http`` asks (user, vhost,
resource, topic; docs/decisions.md "Scaled shape"). A device may publish to ``amq.topic``
only with the routing keys of its own topics; it may declare, bind or read nothing, so it
cannot subscribe. The ingester is a RabbitMQ internal user (it only consumes the readings
queue): its questions never reach the platform.
"""

from __future__ import annotations

from sensornet.topics import TOPIC_KINDS

ALLOW = "allow"
DENY = "deny"
EXCHANGE = "amq.topic"  # where RabbitMQ's MQTT plugin publishes


def routing_key_prefix(topic_prefix: str) -> str:
    """The topic prefix as the MQTT plugin turns it into a routing key (``/`` <-> ``.``)."""
    return topic_prefix.translate(str.maketrans("./", "/."))


def own_routing_keys(key_prefix: str, device_id: str) -> frozenset[str]:
    return frozenset(f"{key_prefix}.{device_id}.{kind}" for kind in TOPIC_KINDS)


def vhost_allowed(vhost: str, expected: str = "/") -> bool:
    return vhost == expected


def resource_allowed(resource: str, name: str, permission: str) -> bool:
    """A device writes to the MQTT exchange and nothing else: no queue of its own (no
    subscriptions), no configure."""
    return resource == "exchange" and name == EXCHANGE and permission == "write"


def topic_allowed(
    key_prefix: str, device_id: str, name: str, permission: str, routing_key: str
) -> bool:
    """Publishing (write) on ``amq.topic`` with one of the device's own routing keys. A
    device id holding ``.``, ``*`` or ``#`` never matches a key of another device: the
    comparison is exact, not a pattern."""
    return (
        name == EXCHANGE
        and permission == "write"
        and routing_key in own_routing_keys(key_prefix, device_id)
    )
