"""MQTT connections of simulated devices: connect with backoff, Last Will, retained status,
a bounded number of unacknowledged QoS 1 messages, and counters of sent/acked.

Built as a device that loses nothing should be (docs/simulator.md, "Building a device that
loses nothing"): a fixed client id per run, clean start off with a session expiry, every
QoS 1 message kept until its PUBACK and sent again on every reconnect, whether or not the
broker still had the session. What is still unacknowledged when the device gives up is
known reading by reading (``unacknowledged``), so the ground truth can book it as lost on
the device, not by the platform."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Sequence
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311

from gateway_sim.payloads import STATUS_OFFLINE, STATUS_ONLINE
from sensornet.errors import SensornetError
from sensornet.mqtt_tls import MqttTls
from sensornet.mqtt_wire import CountingStorage, GmqttHooks, publish_packet
from sensornet.topics import device_topic

log = logging.getLogger("gateway_sim")


RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 30.0
#: How long the broker keeps a simulated device's session while it is away: long enough
#: for any restart a test or a load run rides out, short enough that the sessions of
#: finished runs (their client ids are new each run) do not pile up in the broker.
SESSION_EXPIRY_S = 600

#: A reading as the ground truth knows it: (sensor id, seq).
ReadingKey = tuple[str, int]


class SimulatorError(SensornetError):
    """The simulator could not reach the broker or the platform."""


class DeviceConnection:
    """One MQTT connection. ``status_of`` devices get a retained "online" on connect; the
    Last Will ("offline", retained) covers ``will_device`` when the link is a device's own."""

    def __init__(
        self,
        client_id: str,
        username: str,
        password: str,
        prefix: str,
        *,
        will_device: str | None = None,
        max_in_flight: int = 1000,
        tls: MqttTls | None = None,
        mqtt311: bool = False,
    ) -> None:
        self.prefix = prefix
        self.tls = tls
        # MQTT 3.1.1 for brokers without MQTT 5 (RabbitMQ 3.10, the scaled shape): the
        # CONNECT and the PUBLISH packets this class builds carry no properties
        self.mqtt311 = mqtt311
        self._properties: bytes | None = None if mqtt311 else b""
        will = None
        if will_device is not None:
            will = gmqtt.Message(
                device_topic(prefix, will_device, "status"), STATUS_OFFLINE, qos=1, retain=True
            )
        self.storage = CountingStorage(max_in_flight)
        self.client = gmqtt.Client(
            client_id,
            clean_session=False,
            session_expiry_interval=SESSION_EXPIRY_S,
            will_message=will,
            persistent_storage=self.storage,
        )
        self.client.set_auth_credentials(username, password)
        self.client.set_config({"reconnect_retries": -1, "reconnect_delay": RECONNECT_FIRST_S})
        self.client.on_connect = self._on_connect
        # gmqtt retries a lost connection after a fixed delay; its retries call
        # ``client.reconnect(delay=True)``, so wrapping that doubles the delay per failed
        # attempt (with jitter, capped): thousands of devices do not hammer a restarting
        # broker in lockstep
        retry = self.client.reconnect

        async def reconnect(delay: bool = False) -> None:
            if delay:
                grown = min(self.client.reconnect_delay * 2, RECONNECT_MAX_S)
                self.client.reconnect_delay = grown * (0.8 + 0.4 * random.random())
            await retry(delay=delay)

        self.client.reconnect = reconnect
        self.client.on_disconnect = self._on_disconnect
        self.sent = 0
        self.reconnects = 0
        self._hooks = GmqttHooks(self.client)
        # gmqtt's own PUBACK handler logs twice per PUBACK: a third of the generator's time
        self._hooks.on_puback(self._puback)
        self._hooks.resend_unacked_on_every_connect()
        #: packet id -> the readings its message carries, until the PUBACK
        self._carrying: dict[int, tuple[ReadingKey, ...]] = {}

    def _puback(self, mid: int) -> None:
        self.storage.remove_message_by_mid(mid)
        self._carrying.pop(mid, None)

    def unacknowledged(self) -> list[ReadingKey]:
        """The readings of every message the broker has not acknowledged (yet)."""
        return [key for keys in self._carrying.values() for key in keys]

    def _on_connect(self, client: Any, flags: Any, rc: Any, properties: Any) -> None:
        self.client.reconnect_delay = RECONNECT_FIRST_S

    def _on_disconnect(self, client: Any, packet: Any, exc: Any = None) -> None:
        self.reconnects += 1

    async def connect(self, host: str, port: int, attempts: int = 8) -> None:
        """Connect, retrying with exponential backoff and jitter."""
        delay = 0.2
        for attempt in range(attempts):
            try:
                ssl_context = self.tls.context() if self.tls else False
                await self.client.connect(
                    host,
                    port,
                    ssl=ssl_context,
                    keepalive=60,
                    version=MQTTv311 if self.mqtt311 else MQTTv50,
                )
                return
            except ssl.SSLCertVerificationError as exc:
                if self.tls is None:
                    raise
                raise self.tls.failure(exc, host, port) from exc  # no retry can help
            except (TimeoutError, OSError, gmqtt.mqtt.handler.MQTTConnectError) as exc:
                if attempt == attempts - 1:
                    if isinstance(exc, ssl.SSLError | ConnectionResetError) and self.tls:
                        raise self.tls.failure(exc, host, port) from exc
                    raise SimulatorError(
                        f"cannot connect to MQTT {host}:{port}: {exc}; is the broker up "
                        f"(sensornet services up) and SENSORNET_MQTT_FLEET_PASSWORD right?"
                    ) from exc
                log.warning("connect failed (%s), retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 30.0)

    def status(self, device_id: str, online: bool) -> None:
        payload = STATUS_ONLINE if online else STATUS_OFFLINE
        self.publish(device_topic(self.prefix, device_id, "status"), payload, retain=True)

    def publish(
        self, topic: str, payload: bytes, retain: bool = False, carries: Sequence[ReadingKey] = ()
    ) -> None:
        """One QoS 1 message; ``carries`` names the readings in it (for the ground truth)."""
        self.publish_batch([(topic, payload)], retain=retain, carries=[tuple(carries)])

    def publish_batch(
        self,
        messages: Sequence[tuple[str, bytes]],
        *,
        retain: bool = False,
        carries: Sequence[tuple[ReadingKey, ...]] | None = None,
    ) -> None:
        """QoS 1 PUBLISHes in one socket write. A syscall per message was the load
        generator's largest cost; this builds the packets directly (MQTT 5, no
        properties) with ids from gmqtt's own pool, so its PUBACK handling and
        resend-on-reconnect store work unchanged. Without a connection the packets
        wait in the store and go out at the next connect."""
        out = bytearray()
        for n, (topic, payload) in enumerate(messages):
            mid = self._hooks.next_packet_id()
            packet = publish_packet(topic.encode(), payload, mid, self._properties)
            if retain:
                packet = bytes([packet[0] | 0x01]) + packet[1:]
            self.storage.push_message(mid, packet)
            if carries is not None and carries[n]:
                self._carrying[mid] = carries[n]
            out += packet
        self._hooks.send(bytes(out))
        self.sent += len(messages)

    async def room(self) -> None:
        """Wait while the in-flight limit is reached (bounded QoS 1 window)."""
        await self.storage.room.wait()

    async def drain(self, timeout_s: float = 30.0) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self.storage.wait_empty()
        except TimeoutError:
            return False
        return True

    @property
    def acked(self) -> int:
        return int(self.storage.acked)

    async def close(self, *, graceful: bool = True) -> None:
        """Close, and stop gmqtt from reconnecting (it would for ever). ``graceful=False``:
        drop the connection without DISCONNECT first, so the broker sends the Will."""
        if not graceful:
            self._hooks.abort()
            await self.client.disconnect()
            return
        # gmqtt's disconnect marks the client closed before the dropped connection is seen
        # (no reconnect starts), and is harmless on a connection already gone; a session
        # expiry of 0 in the DISCONNECT ends the session (nothing is owed any more)
        await self.client.disconnect(session_expiry_interval=0)
