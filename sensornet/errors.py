"""One exception hierarchy for the platform: catch ``SensornetError`` to catch ours."""

from __future__ import annotations


class SensornetError(Exception):
    """Root of every error the platform raises on purpose."""


class ConfigError(SensornetError):
    """A setting is missing or inconsistent; the message names the variable."""


class ServiceError(SensornetError):
    """A local service (broker, InfluxDB) could not be installed, started or reached."""


class MqttTlsError(ServiceError):
    """The TLS handshake with the broker failed; the message names the host, the CA file
    and the setting to fix."""


class PayloadError(SensornetError):
    """A payload cannot be decoded; ``reason`` is a stable machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class LineProtocolError(SensornetError):
    """A value cannot be written as InfluxDB line protocol (e.g. NaN, bad type)."""


class InfluxError(SensornetError):
    """InfluxDB refused or failed a request; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class InfluxFatalError(InfluxError):
    """401/403/404 from InfluxDB: retrying cannot help, an operator must act."""


class InfluxPartialWriteError(InfluxError):
    """400 from /write: some lines were rejected, the others were stored."""


class InfluxTooLargeError(InfluxError):
    """413 from /write: the batch must be split."""


class InfluxUnavailableError(InfluxError):
    """5xx, timeout or connection failure: retry later, spool meanwhile."""


class InfluxRateLimitedError(InfluxUnavailableError):
    """429: InfluxDB (2.x, 3.x, Cloud) asks for fewer writes; ``retry_after_s`` is its
    ``Retry-After`` in seconds (None when it sent none). Retried no sooner, then spooled."""

    def __init__(
        self, message: str, status: int = 429, body: str = "", retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, status, body)
        self.retry_after_s = retry_after_s


class InfluxUnexpectedStatusError(InfluxUnavailableError):
    """A status the client has no rule for (e.g. 422, 3xx, a 2xx other than 204 on a write).
    Nothing says the data was stored, so it is handled as unavailable: retry, then spool."""


class CatalogueError(SensornetError):
    """A catalogue or district file is malformed; the message names file, entry and problem."""


class UnknownSensorType(SensornetError):
    """A sensor type id is not in the catalogue; the message lists the known ids."""


class UnknownSubdistrict(SensornetError):
    """A subdistrict id is not in the district; the message lists the known ids."""


class InvalidCursor(SensornetError):
    """A paging cursor that no page of ours produced (garbage, edited or of another list)."""


class TimeOutOfRange(SensornetError):
    """A time the time-series store cannot hold (int64 nanoseconds: 1677 to 2262)."""
