"""Northbound's pure parts: the Standard Webhooks signature (including a vector computed
independently here), the subscription checks, the CloudEvents envelope, retry backoff,
secrets at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from pathlib import Path

import orjson
import pytest

from alarms.northbound.retry import backoff_s
from sensornet.catalogue import load_catalogue
from sensornet.district import load_district
from sensornet.errors import ConfigError
from sensornet.northbound.encode import batch
from sensornet.northbound.envelope import CONTENT_TYPE, batch_body, batch_id
from sensornet.northbound.events import Event, rfc3339_ns
from sensornet.northbound.secretbox import SecretBox, SecretUnreadable, secret_box
from sensornet.northbound.signing import (
    InvalidSecret,
    SignatureError,
    new_secret,
    secret_key,
    sign_headers,
    verify,
)
from sensornet.northbound.sources import _reading_items, quantity_kinds, to_event
from sensornet.northbound.spec import InvalidSubscription, check_spec

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def test_signature_matches_an_independent_computation() -> None:
    body = b'[{"id":"x"}]'
    headers = sign_headers(secret_key(SECRET), "msg_1", 1_700_000_000, body)
    mac = hmac.new(b"k" * 32, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }
    verify(SECRET, headers, body, now=1_700_000_100)


@pytest.mark.parametrize(
    ("change", "now"),
    [
        ({"body": b'[{"id":"y"}]'}, 1_700_000_000),  # altered body
        ({"secret": new_secret()}, 1_700_000_000),  # another secret
        ({}, 1_700_000_000 + 301),  # outside the 5-minute window
        ({"drop": "webhook-signature"}, 1_700_000_000),
    ],
)
def test_signature_refuses(change: dict[str, object], now: int) -> None:
    body = b'[{"id":"x"}]'
    headers = sign_headers(secret_key(SECRET), "msg_1", 1_700_000_000, body)
    if "drop" in change:
        headers.pop(str(change["drop"]))
    secret = str(change.get("secret", SECRET))
    sent = change.get("body", body)
    assert isinstance(sent, bytes)
    with pytest.raises(SignatureError):
        verify(secret, headers, sent, now=now)


@pytest.mark.parametrize(
    "secret", ["plain-text", "whsec_not base64!", "whsec_" + base64.b64encode(b"k" * 8).decode()]
)
def test_bad_secrets_are_refused(secret: str) -> None:
    with pytest.raises(InvalidSecret):
        secret_key(secret)


def _spec(**over: object) -> object:
    args: dict[str, object] = {
        "name": "ops",
        "url": "https://ops.example.gov.cn/hook",
        "kinds": ["readings"],
        "types": [],
        "subdistricts": [],
        "sensors": [],
        "resolution": None,
        "catalogue": load_catalogue(),
        "district": load_district(),
        "allow_http": False,
    }
    args.update(over)
    return check_spec(**args)  # type: ignore[arg-type]


def test_spec_accepts_https_and_loopback_http() -> None:
    _spec()
    _spec(url="http://127.0.0.1:9000/x")
    _spec(url="http://[::1]:9000/x")
    _spec(url="http://ops.internal/x", allow_http=True)
    _spec(kinds=["aggregates", "alarms"], resolution="5m", types=["noise"])


@pytest.mark.parametrize(
    ("over", "says"),
    [
        ({"url": "http://ops.example.gov.cn/x"}, "plain http"),
        ({"url": "ftp://x/y"}, "https"),
        ({"url": "https://user:pw@x/y"}, "credentials"),
        ({"kinds": []}, "kinds"),
        ({"kinds": ["everything"]}, "unknown 'everything'"),
        ({"kinds": ["aggregates"]}, "resolution"),
        ({"kinds": ["aggregates"], "resolution": "2m"}, "resolution '2m'"),
        ({"resolution": "1m"}, "meaningless"),
        ({"types": ["nosuch"]}, "filter.types"),
        ({"subdistricts": ["atlantis"]}, "filter.subdistricts"),
        ({"sensors": [""]}, "filter.sensors"),
        ({"name": " "}, "name"),
    ],
)
def test_spec_refuses(over: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidSubscription, match=says):
        _spec(**over)


def test_envelope_is_a_cloudevents_batch() -> None:
    t = 1_765_000_000_123_456_789
    e = Event(t, "AQ-1", "readings", "AQ-1", "air_quality", "beizhan", {"values": {"pm25": 12.5}})
    (ce,) = orjson.loads(batch_body([e], "/sensornet"))
    assert ce == {
        "specversion": "1.0",
        "id": f"readings:AQ-1:{t}",
        "source": "/sensornet",
        "type": "city.sensornet.reading.v1",
        "subject": "AQ-1",
        "time": "2025-12-06T05:46:40.123456789Z",
        "datacontenttype": "application/json",
        "sensortype": "air_quality",
        "subdistrict": "beizhan",
        "data": {"values": {"pm25": 12.5}},
    }
    assert CONTENT_TYPE == "application/cloudevents-batch+json"
    assert batch_id("nb_1", [e]) == batch_id("nb_1", [e]) != batch_id("nb_2", [e])
    assert rfc3339_ns(1_765_000_000 * 10**9) == "2025-12-06T05:46:40.000000000Z"


@pytest.mark.parametrize(
    ("measurement", "columns", "rows"),
    [
        (  # numbers, a value missing, no seq, floats Python and orjson write alike
            "air_quality",
            ["time", "pm10", "pm25", "seq", "subdistrict"],
            [[1_765_000_000_123_456_789, 20, 12.5, 7, "beizhan"],
             [1_765_000_000_999_999_999, None, 1e-05, None, "beizhan"],
             [1_765_000_001_000_000_000, 1e16, -0.0, 2**40, None],
             [1_765_000_002_000_000_000, None, None, 3, "jingansi"]],
        ),
        (  # booleans and strings: not the numbers' template
            "street_light",
            ["time", "mode", "on", "power", "subdistrict"],
            [[1_765_000_000_000_000_001, 'auto "dusk"\\', True, 40.5, "beizhan"],
             [1_765_000_000_000_000_002, None, False, None, "beizhan"]],
        ),
        ("air_quality", ["time", "seq"], [[1_765_000_000_000_000_001, 1]]),  # no values
    ],
)  # fmt: skip
def test_readings_encoded_from_rows_as_from_events(
    measurement: str, columns: list[str], rows: list[list[object]]
) -> None:
    """The hot path's JSON (straight from InfluxDB's rows) is the events' JSON."""
    catalogue = load_catalogue()
    sensor_id = 'AQ-"1"\\é'
    series = [{"name": measurement, "tags": {"sensor_id": sensor_id}, "columns": columns,
               "values": rows}]  # fmt: skip
    items = _reading_items(series, quantity_kinds(catalogue), "/city")
    kinds = quantity_kinds(catalogue)
    events = [
        to_event("readings", measurement, {**dict(zip(columns, r, strict=True)),
                 "sensor_id": sensor_id}, {}, kinds)[1]
        for r in rows
    ]  # fmt: skip
    assert orjson.loads(batch(items)) == orjson.loads(batch_body(events, "/city"))  # type: ignore[arg-type]
    assert [(t, k) for t, k, _ in items] == [(int(r[0]), sensor_id) for r in rows]  # type: ignore[call-overload]


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    rng = random.Random(1)
    waits = [backoff_s(n, 60.0, rng) for n in range(12)]
    assert 0.25 <= waits[0] <= 0.5
    assert all(30.0 <= w <= 60.0 for w in waits[8:])
    assert waits[3] < waits[6]


def test_secret_box(tmp_path: Path) -> None:
    box = secret_box(None, tmp_path, production=False)
    sealed = box.seal(SECRET)
    assert SECRET not in sealed and box.open(sealed) == SECRET
    assert (tmp_path / "northbound.key").stat().st_mode & 0o777 == 0o600
    assert secret_box(None, tmp_path, production=False).open(sealed) == SECRET  # same key file
    with pytest.raises(ConfigError):
        secret_box(None, tmp_path, production=True)
    with pytest.raises(ConfigError):
        SecretBox([b"short"])
    other = secret_box(None, tmp_path / "other", production=False)
    with pytest.raises(SecretUnreadable):
        other.open(sealed)
    key = (tmp_path / "northbound.key").read_text()
    rotated = secret_box(f"{(tmp_path / 'other' / 'northbound.key').read_text()},{key}", tmp_path,
                         production=True)  # fmt: skip
    assert rotated.open(sealed) == SECRET  # an old key still opens what it sealed


def test_the_standard_webhooks_library_verifies_our_signature() -> None:
    """Interoperability: a receiver using the scheme's own Python library accepts us."""
    import time

    from standardwebhooks import Webhook

    body = batch_body(
        [Event(1, "AQ-1", "status", "AQ-1", "air_quality", "beizhan", {"state": "online"})],
        "/sensornet",
    )
    headers = sign_headers(secret_key(SECRET), "msg_x", int(time.time()), body)
    assert Webhook(SECRET).verify(body, headers)[0]["data"] == {"state": "online"}
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(body + b" ", headers)
