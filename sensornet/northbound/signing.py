"""The signature of a northbound request, in the Standard Webhooks scheme
(https://www.standardwebhooks.com, v1): ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``.

Why that scheme rather than our own header: receivers have maintained libraries for it in
many languages (and Svix, Zapier, ... send the same), the timestamp and id are signed with
the body (replays of an old request are refused by the receiver's clock window), and a
secret is a plain ``whsec_<base64>`` string. Pure functions; docs/northbound.md shows the
receiving side without any library."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from sensornet.errors import SensornetError

PREFIX = "whsec_"
#: Key sizes Standard Webhooks allows (24 to 64 bytes); we generate 32.
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64
#: How far a receiver should accept a timestamp from its own clock (the spec's 5 minutes).
TOLERANCE_S = 300


class InvalidSecret(SensornetError):
    """A subscription secret is not ``whsec_`` + base64 of 24-64 bytes."""


class SignatureError(SensornetError):
    """A request's signature does not verify (wrong secret, altered body, stale time)."""


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a secret stands for; ``InvalidSecret`` says what is wrong with it."""
    if not secret.startswith(PREFIX):
        raise InvalidSecret(f"a secret starts with {PREFIX!r} (omit it to have one generated)")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret(f"the part after {PREFIX!r} is not valid base64") from exc
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise InvalidSecret(
            f"the key is {len(key)} bytes; it must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES}"
        )
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, msg_id, timestamp, body),
    }


def verify(
    secret: str, headers: dict[str, str], body: bytes, now: int, tolerance_s: int = TOLERANCE_S
) -> None:
    """What a receiver does (and our tests' receiver): raises ``SignatureError`` unless one
    of the space-separated ``v1,`` signatures matches and the timestamp is within the
    window. ``headers`` with lower-case names."""
    try:
        msg_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        given = headers["webhook-signature"].split()
    except (KeyError, ValueError) as exc:
        raise SignatureError("missing or malformed webhook-* headers") from exc
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"timestamp {timestamp} is more than {tolerance_s} s from now")
    expected = signature(secret_key(secret), msg_id, timestamp, body)
    if not any(hmac.compare_digest(expected, g) for g in given):
        raise SignatureError("no signature matches")
