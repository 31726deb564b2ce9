"""Subscription secrets at rest: encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from
the ``cryptography`` package) under a key the registry database does not hold.

Why not hashed, like API keys: the pusher must sign with the secret itself. Why encrypted:
a copy of the registry database (a backup, a dump handed to a developer) then does not let
anyone forge requests the city's platform would trust; the key lives in the deployment's
secrets (``SENSORNET_NORTHBOUND_SECRET_KEY``), readable by the API and the pusher only.
What it does not cover: someone with both the database and that key, or the running
processes' memory. Several comma-separated keys rotate: the first encrypts, all decrypt.
Locally, with no key set, one is generated once in ``<state_dir>/northbound.key`` (0600);
``SENSORNET_ENVIRONMENT=production`` refuses to run without a key set."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from sensornet.errors import ConfigError, SensornetError
from sensornet.settings import Settings

KEY_FILE = "northbound.key"


class SecretUnreadable(SensornetError):
    """A stored secret does not decrypt with the configured keys (a key was changed)."""


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigError("SENSORNET_NORTHBOUND_SECRET_KEY: no key given")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except ValueError as exc:
            raise ConfigError(
                "SENSORNET_NORTHBOUND_SECRET_KEY: each key must be 32 url-safe base64 bytes "
                "(python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from exc

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise SecretUnreadable(
                "a subscription secret does not decrypt with SENSORNET_NORTHBOUND_SECRET_KEY "
                "(was the key replaced rather than rotated?)"
            ) from exc


def secret_box(configured: str | None, state_dir: Path, production: bool) -> SecretBox:
    """The box from the setting, or (local use only) from a key file made on first use."""
    if configured:
        return SecretBox([k.strip().encode() for k in configured.split(",") if k.strip()])
    if production:
        raise ConfigError(
            "SENSORNET_NORTHBOUND_SECRET_KEY is required with SENSORNET_ENVIRONMENT=production"
        )
    path = state_dir / KEY_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = state_dir / f".{KEY_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic and never overwrites: another process may have won
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return SecretBox([path.read_bytes().strip()])


def box_from_settings(settings: Settings) -> SecretBox:
    key = settings.northbound_secret_key
    return secret_box(
        key.get_secret_value() if key else None,
        settings.state_dir,
        settings.environment == "production",
    )
