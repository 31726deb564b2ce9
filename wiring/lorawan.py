"""A stand-in for a LoRaWAN network server's MQTT broker: a local Mosquitto with the
topics ChirpStack v4 and The Things Stack v3 publish uplinks on, a publisher identity (the
"network server": the simulator, tests, the bench) and the platform's subscribe-only one.
In production the broker is the network server's own (docs/inputs/lorawan.md)."""

from __future__ import annotations

from pathlib import Path

from wiring.services import Mosquitto

NS_PUBLISHER = "ns-publisher"


def network_server_acl(subscriber: str, publisher: str = NS_PUBLISHER) -> str:
    return f"""# a LoRaWAN network server's integration broker (wiring.lorawan)
user {publisher}
topic write application/#
topic write v3/#

user {subscriber}
topic read application/+/device/+/event/#
topic read v3/+/devices/+/#
"""


def network_server_broker(
    home: Path, port: int, subscriber: str, subscriber_password: str, publisher_password: str,
    max_queued_messages: int = 2_000_000,
) -> Mosquitto:  # fmt: skip
    return Mosquitto(
        name="ns-mosquitto",
        home=home,
        port=port,
        users={subscriber: subscriber_password, NS_PUBLISHER: publisher_password},
        acl=network_server_acl(subscriber),
        max_queued_messages=max_queued_messages,
    )
