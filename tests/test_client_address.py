"""Who a request is from (sensornet.client_address): X-Forwarded-For only as far as
trusted proxies vouch for it."""

from __future__ import annotations

import pytest

from sensornet.client_address import client_address, trusted_networks

NGINX = trusted_networks(["127.0.0.1"])
CHAIN = trusted_networks(["127.0.0.1", "10.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("127.0.0.1", ["203.0.113.9"], (), "127.0.0.1"),  # no proxy trusted: the peer
        ("198.51.100.1", ["203.0.113.9"], NGINX, "198.51.100.1"),  # not from the proxy
        ("127.0.0.1", ["203.0.113.9"], NGINX, "203.0.113.9"),
        ("127.0.0.1", ["1.2.3.4, 203.0.113.9"], NGINX, "203.0.113.9"),  # forged left part
        ("127.0.0.1", ["1.2.3.4", "203.0.113.9"], NGINX, "203.0.113.9"),  # two headers
        ("127.0.0.1", ["1.2.3.4, 203.0.113.9, 10.1.2.3"], CHAIN, "203.0.113.9"),
        ("127.0.0.1", ["10.1.2.3"], CHAIN, "10.1.2.3"),  # all trusted: the leftmost
        ("127.0.0.1", ["not-an-ip"], NGINX, "127.0.0.1"),  # nonsense: the proxy itself
        ("127.0.0.1", [], NGINX, "127.0.0.1"),
        (None, ["203.0.113.9"], NGINX, "unknown"),
    ],
)
def test_client_address(
    peer: str | None, forwarded: list[str], trusted: tuple[object, ...], client: str
) -> None:
    assert client_address(peer, forwarded, trusted) == client  # type: ignore[arg-type]


def test_a_bad_proxy_entry_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'nginx' is not an address or network"):
        trusted_networks(["127.0.0.1", "nginx"])
