"""An https InfluxDB (real influxd with a certificate from a throwaway CA, ``trustme``):
writes (httpx) and queries (``sensornet.keepalive_http``) both verify it against the CA given as
``SENSORNET_INFLUX_CA_FILE``, and both refuse it without that CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from sensornet.errors import InfluxUnavailableError
from sensornet.influx import InfluxClient, influx_client
from sensornet.lineprotocol import encode_lines, encode_point
from sensornet.settings import Settings
from wiring.services import InfluxDB, ensure_binaries, free_port


@pytest.fixture(scope="module")
def tls_influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxDB, Path]]:
    ensure_binaries()
    home = tmp_path_factory.mktemp("influxdb-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = home / "chain.pem", home / "key.pem", home / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    service = InfluxDB(
        name="influxd-tls", home=home, port=free_port(), rpc_port=free_port(), tls=(chain, key)
    )
    service.start()
    yield service, ca_file
    service.stop()


async def test_writes_and_queries_verify_the_servers_certificate(
    tls_influxd: tuple[InfluxDB, Path],
) -> None:
    service, ca_file = tls_influxd
    settings = Settings(
        influx_url=f"https://127.0.0.1:{service.port}",
        influx_db="tls",
        influx_ca_file=ca_file,
        _env_file=None,  # type: ignore[call-arg]
    )
    async with influx_client(settings) as influx:
        assert await influx.ping()
        await influx.create_database()
        await influx.write(encode_lines([encode_point("m", {"k": "v"}, {"f": 1.5}, 10**18)]))
        series = await influx.query('SELECT "f" FROM "m"')  # over sensornet.keepalive_http
        assert series[0]["values"] == [[10**18, 1.5]]


async def test_an_unknown_ca_is_refused_by_both_paths(tls_influxd: tuple[InfluxDB, Path]) -> None:
    service, _ = tls_influxd
    url = f"https://127.0.0.1:{service.port}"
    async with InfluxClient(url, "tls") as influx:  # the system's CAs do not know it
        assert not await influx.ping()
        with pytest.raises(InfluxUnavailableError):
            await influx.write(encode_lines([encode_point("m", {"k": "v"}, {"f": 1.5}, 1)]))
        with pytest.raises(InfluxUnavailableError, match="unreachable: SSLCertVerificationError"):
            await influx.query("SHOW DATABASES")
