"""``python -m wiring.rabbitmq_setup``: declare the readings queue, its bindings and the
ingester's user on a cluster that runs elsewhere (deploy/scaled), through the first
management API of ``SENSORNET_RABBITMQ_MANAGEMENT_URLS`` that answers."""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlsplit

import httpx

from sensornet.settings import Settings
from wiring.rabbitmq import declare_readings


def main() -> int:
    settings = Settings()
    for url in filter(None, (u.strip() for u in settings.rabbitmq_management_urls.split(","))):
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.hostname}:{parts.port}/api"
        with httpx.Client(
            base_url=base, auth=(parts.username or "", parts.password or ""), timeout=30
        ) as client:

            def call(method: str, path: str, body: Any) -> Any:
                r = client.request(method, path, json=body)
                r.raise_for_status()
                return r.json() if r.content else None

            try:
                declare_readings(
                    call,
                    settings.topic_prefix,
                    settings.mqtt_ingest_user,
                    settings.mqtt_ingest_password.get_secret_value(),
                )
            except httpx.HTTPError as exc:
                print(f"{base}: {exc}", file=sys.stderr)
                continue
        print(json.dumps({"declared_on": base, "queue": "readings"}))
        return 0
    print("no management API of SENSORNET_RABBITMQ_MANAGEMENT_URLS answered", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
