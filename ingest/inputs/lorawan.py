"""The LoRaWAN network-server input: the NS's MQTT integration (ChirpStack v4 or The
Things Stack v3) read with the same persistent QoS 1 session as the native input
(``ingest.inputs.mqtt.MqttSource``: acks after the batch is durable), on the NS's broker
with the NS's credentials. Each message is handed over with ``fmt`` set to the network,
so the pipeline decodes it with ``sensornet.lorawan.formats`` (docs/inputs/lorawan.md).

The NS publishes at the QoS its integration is configured with: ack-after-write holds
only for QoS 1 (ChirpStack ``[integration.mqtt] qos=1``; The Things Stack publishes its
MQTT integration at the subscriber's QoS). At QoS 0 the broker does not redeliver what a
crashed ingester had not written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ingest.inputs.mqtt import MqttSource
from sensornet.mqtt_tls import MqttTls
from sensornet.mqtt_wire import InboundMessage
from sensornet.settings import Settings

if TYPE_CHECKING:
    from ingest.inputs import InputContext

UPLINK_FILTERS = {
    "chirpstack": ["application/+/device/+/event/up", "application/+/device/+/event/status"],
    "tts": ["v3/+/devices/+/up"],
}


def topic_filters(settings: Settings) -> list[str]:
    given = [t.strip() for t in settings.lorawan_mqtt_topics.split(",") if t.strip()]
    return given or list(UPLINK_FILTERS[settings.lorawan_network])


def build(context: InputContext) -> MqttSource:
    s = context.settings
    fmt = s.lorawan_network  # the format's name in sensornet.formats
    deliver = context.deliver

    def tagged(messages: list[InboundMessage], size: int) -> None:
        for m in messages:
            m.fmt = fmt
        deliver(messages, size)

    source = MqttSource(
        host=s.lorawan_mqtt_host,
        port=s.lorawan_mqtt_port,
        client_id=s.lorawan_mqtt_client_id,
        username=s.lorawan_mqtt_user,
        password=s.lorawan_mqtt_password.get_secret_value(),
        topic_filters=topic_filters(s),
        on_messages=tagged,
        session_expiry_s=s.ingest_session_expiry_s,
        receive_maximum=s.ingest_receive_maximum,
        await_subscription=False,
        tls=MqttTls(s.lorawan_mqtt_ca_file) if s.lorawan_mqtt_tls else None,
    )
    source.name = "lorawan"
    return source
