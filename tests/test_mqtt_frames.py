"""The ingester's own PUBLISH frame parser (ingest/mqtt_source.py) on byte streams as a
broker sends them: every cut of the stream gives the same messages, properties are
skipped, and a malformed packet drops the connection instead of raising."""

from __future__ import annotations

from typing import Any

from ingest.bench_pipeline import _frame_reader
from ingest.mqtt_source import InboundMessage
from sensornet.mqtt_blast import publish_packet

STREAM = b"".join(
    [
        publish_packet(b"city/v1/AQ-1/readings", b'{"pm25": 1.5}', 1, b""),
        publish_packet(b"city/v1/AQ-2/readings", b'{"pm25": 2.5}', 2, b"\x01\x01"),  # a property
        publish_packet(b"city/v1/AQ-3/status", b"online", None, b""),  # QoS 0
        publish_packet(b"city/v1/GW-1/pack", b"x" * 300, 65535, b""),  # two-byte length
    ]
)


def read(chunks: list[bytes]) -> tuple[list[InboundMessage], int]:
    got: list[InboundMessage] = []
    sizes: list[int] = []

    def deliver(messages: list[InboundMessage], size: int) -> None:
        got.extend(messages)
        sizes.append(size)

    source: Any = _frame_reader(deliver)
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        used = source._read_packets(None, source.connection, buffer)
        if used < 0:
            return got, used
        buffer = buffer[used:]
    assert buffer == b""
    return got, sum(sizes)


def test_every_cut_of_the_stream_gives_the_same_messages() -> None:
    whole, size = read([STREAM])
    assert [(m.topic, m.payload, m.mid) for m in whole] == [
        ("city/v1/AQ-1/readings", b'{"pm25": 1.5}', 1),
        ("city/v1/AQ-2/readings", b'{"pm25": 2.5}', 2),
        ("city/v1/AQ-3/status", b"online", None),
        ("city/v1/GW-1/pack", b"x" * 300, 65535),
    ]
    assert size == sum(len(m.payload) for m in whole)
    assert len({m.arrived_ns for m in whole}) == 4  # each message its own arrival time
    for cut in range(1, len(STREAM)):
        parts, _ = read([STREAM[:cut], STREAM[cut:]])
        assert [(m.topic, m.payload, m.mid) for m in parts] == [
            (m.topic, m.payload, m.mid) for m in whole
        ]


def test_a_malformed_packet_drops_the_connection() -> None:
    short = bytes([0x32, 1, 0])  # a PUBLISH too short for its topic length
    assert read([short])[1] == -1
    too_long = bytes([0x32, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])  # a five-byte remaining length
    assert read([too_long])[1] == -1
