"""The platform's own MQTT framing (sensornet/mqtt_wire.py) against gmqtt's parser.

The ingester cuts PUBLISH packets out of the broker's byte stream itself instead of going
through gmqtt's frame loop (docs/decisions.md). This holds that reader to gmqtt's own
``_read_packet`` and PUBLISH handler on the same bytes: same packets, same topics, payloads
and packet ids, for every cut of the stream. An upgrade of gmqtt that changes what it
parses, or the private names the ingester relies on, fails here first."""

from __future__ import annotations

import itertools
import struct
from types import SimpleNamespace
from typing import Any

import gmqtt
from gmqtt.mqtt.protocol import MQTTProtocol
from hypothesis import given, settings
from hypothesis import strategies as st

from sensornet.mqtt_wire import FrameReader, InboundMessage, publish_packet, varint

Event = tuple[Any, ...]  # ("publish", topic, payload, mid) or ("other", cmd, body)


def ours(chunks: list[bytes]) -> tuple[list[Event], int]:
    """Our reader over ``chunks`` as they would arrive; -1 if it dropped the connection."""
    events: list[Event] = []

    def deliver(messages: list[InboundMessage], size: int) -> None:
        assert size == sum(len(m.payload) for m in messages)
        events.extend(("publish", m.topic, m.payload, m.mid) for m in messages)

    reader = FrameReader(deliver, lambda cmd, body: events.append(("other", cmd, body)))
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        used = reader.read(buffer, "connection")
        if used < 0:
            return events, used
        buffer = buffer[used:]
    return events, len(buffer)


def gmqtt_reads(chunks: list[bytes]) -> tuple[list[Event], int]:
    """gmqtt's own frame loop and PUBLISH handler (an MQTT 5 client) over the same chunks."""
    packages: list[Any] = []
    holder = SimpleNamespace(_connection=SimpleNamespace(put_package=packages.append))
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        used = MQTTProtocol._read_packet(holder, buffer)
        if used < 0:
            return [], used
        buffer = buffer[used:]
    client = gmqtt.Client("contract", optimistic_acknowledgement=True)
    handler = client._package_handler
    events: list[Event] = []
    acked: list[int] = []
    handler._send_puback = lambda mid, reason_code=0: acked.append(mid)

    def on_message(client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        events.append(("publish", topic, payload, acked.pop() if qos else None))
        return 0

    client.on_message = on_message
    for package in packages:
        if package.cmd >> 4 == 3:
            handler._handle_publish_packet(package.cmd, package.data)
        else:
            events.append(("other", package.cmd, package.data))
    return events, len(buffer)


def _utf8(text: bytes) -> bytes:
    return struct.pack("!H", len(text)) + text


# MQTT 5 properties a broker may forward with a PUBLISH
PROPERTIES = st.sampled_from(
    [
        b"",
        b"\x01\x01",  # payload format indicator: UTF-8
        b"\x02" + struct.pack("!I", 3600),  # message expiry interval
        b"\x03" + _utf8(b"application/json"),  # content type
        b"\x0b" + varint(300),  # subscription identifier (a two-byte varint)
        b"\x26" + _utf8(b"site") + _utf8(b"jingan") + b"\x01\x00",  # user property + format
    ]
)
TOPICS = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="+#\x00"),
    min_size=1,
    max_size=60,
).map(lambda t: f"city/v1/{t}".encode())
PUBLISHES = st.builds(
    publish_packet,
    TOPICS,
    st.one_of(st.binary(max_size=300), st.binary(min_size=16_380, max_size=16_400)),
    st.one_of(st.none(), st.integers(1, 65_535)),
    PROPERTIES,
)
OTHERS = st.sampled_from(
    [
        b"\xd0\x00",  # PINGRESP
        b"\x90\x04\x00\x07\x00\x01",  # SUBACK, packet id 7, no properties, granted QoS 1
        b"\x40\x02\x00\x09",  # PUBACK of one of our own publishes
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(PUBLISHES, OTHERS), min_size=1, max_size=8),
    st.lists(st.integers(0, 40_000), max_size=4),
)
def test_our_reader_sees_what_gmqtt_sees(packets: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(packets)
    points = sorted({c % len(stream) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    mine = ours(chunks)
    theirs = gmqtt_reads(chunks)
    assert mine == theirs
    assert mine[1] == 0  # every packet complete and consumed
    assert len(mine[0]) == len(packets)


def test_each_message_gets_its_own_arrival_time() -> None:
    got: list[InboundMessage] = []
    reader = FrameReader(lambda messages, size: got.extend(messages), lambda cmd, body: None)
    stream = b"".join(publish_packet(b"city/v1/AQ-1/readings", b"{}", i, b"") for i in (1, 2, 3))
    assert reader.read(stream, None) == len(stream)
    assert len({m.arrived_ns for m in got}) == 3


def test_a_malformed_packet_drops_the_connection() -> None:
    short = bytes([0x32, 1, 0])  # a PUBLISH too short for its topic length
    assert ours([short])[1] == -1
    too_long = bytes([0x32, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])  # a five-byte remaining length
    assert ours([too_long])[1] == -1  # (gmqtt would wait for 256 MB before it gave up)
