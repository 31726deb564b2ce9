"""MQTT over TLS for every client of the platform: what to trust, and why a handshake failed.

Each client (ingester, simulator links, ``BulkPublisher``, the API's health check) takes an
``MqttTls`` (or ``None`` for plain MQTT) rather than an ``ssl.SSLContext``: it is plain
data, so it crosses into the load generator's worker processes, and it keeps the file
names an error message must name. Its context is made once per process and shared,
since 10,000 simulated links must not each load the CA bundle.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from pathlib import Path

from sensornet.errors import ConfigError, MqttTlsError
from sensornet.settings import Settings

# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH
_NAME_MISMATCH = {62, 64}


@dataclass(frozen=True)
class MqttTls:
    """Verify the broker against ``ca_file`` (default: the system's CAs) and its host name;
    present ``cert_file``/``key_file`` to a broker that requires a client certificate."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MqttTls | None:
        if not settings.mqtt_tls:
            return None
        return cls(settings.mqtt_ca_file, settings.mqtt_cert_file, settings.mqtt_key_file)

    def context(self) -> ssl.SSLContext:
        """A client context (TLS 1.2 or later, certificate and host name checked)."""
        return _context(self)

    @property
    def trust(self) -> str:
        if self.ca_file is None:
            return "a CA the system trusts (SENSORNET_MQTT_CA_FILE is not set)"
        return f"the CA in SENSORNET_MQTT_CA_FILE={self.ca_file}"

    def failure(self, exc: OSError, host: str, port: int) -> MqttTlsError:
        """``exc`` from setting up TLS with ``host:port``, told as what to fix."""
        where = f"TLS with the MQTT broker at {host}:{port} failed"
        if isinstance(exc, ssl.SSLCertVerificationError):
            said = (exc.verify_message or str(exc)).rstrip(".")
            if exc.verify_code in _NAME_MISMATCH:
                return MqttTlsError(
                    f"{where}: {said}; its certificate is not issued for {host!r}: set "
                    f"SENSORNET_MQTT_HOST to a name the certificate carries"
                )
            return MqttTlsError(
                f"{where}: {said}; its certificate is not signed by {self.trust}: set "
                f"SENSORNET_MQTT_CA_FILE to the CA (PEM) that signed the broker's certificate"
            )
        said = (exc.reason if isinstance(exc, ssl.SSLError) else None) or repr(exc)
        return MqttTlsError(
            f"{where} ({said}): is {port} the broker's TLS listener (usually 8883; plain "
            f"MQTT needs SENSORNET_MQTT_TLS=false), and does it require a client "
            f"certificate (SENSORNET_MQTT_CERT_FILE)?"
        )


@functools.cache
def _context(tls: MqttTls) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"SENSORNET_MQTT_CA_FILE={tls.ca_file}: cannot load CA certificates from it "
            f"({exc}); give the PEM file of the CA that signed the broker's certificate"
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"SENSORNET_MQTT_CERT_FILE={tls.cert_file}, SENSORNET_MQTT_KEY_FILE="
                f"{tls.key_file}: cannot load the client certificate and key ({exc})"
            ) from exc
    return context
