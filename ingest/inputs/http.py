"""The HTTP input: devices and operator platforms push readings over HTTP to the ingester's
own listener (like Telegraf's http_listener; not the query API, which keeps its read-only
InfluxDB user). Every request meets the same pipeline, writer and ack rule as MQTT.

A request is answered only once its readings are durable (InfluxDB or the spool): the
body becomes one ``InboundMessage`` whose ``connection`` is the request's ticket, and the
ingester's ``ack`` resolves the ticket with the pipeline's refusals of that message. So:
200 when every reading was stored; 422 problem+json listing what was refused (each refusal
is a dead letter, the other readings are durable); 4xx at the door for what never reaches
the pipeline (credentials, route, size, content type); 503 while the ingester is paused
(backpressure) or when the readings are not durable within ``ingest_http_wait_s``; 429
when too many requests wait at once. Retries are idempotent: readings with their own
``ts`` overwrite themselves in InfluxDB, and an ``Idempotency-Key`` header makes any retry
(also of readings stamped with their arrival) answer the first request's result without
delivering again. Credentials, routes and the field mapping: docs/payloads.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import time
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Self

from ingest.inputs.http_server import HttpServer, Request, Response
from sensornet.broker_auth import broker_entries, verify
from sensornet.formats import FORMATS
from sensornet.http_push import (
    DEVICE_FORMATS,
    FORMAT_TYPES,
    JSON_TYPES,
    MAX_IDEMPOTENCY_KEY,
    PROBLEM,
    Route,
    credentials,
    header_segments,
    media_type,
    problem,
    route_of,
)
from sensornet.mqtt_wire import InboundMessage
from sensornet.registry.store import devices_fingerprint
from sensornet.sensor_community import node_of_login, pushed_chip
from sensornet.topics import device_topic

if TYPE_CHECKING:
    from ingest.inputs import BatchOutcome, InputContext
    from ingest.pipeline import Reject

log = logging.getLogger("sensornet.ingest.http")

CREDENTIALS_CHECK_S = 2.0  # how often the registry is asked whether credentials changed
CREDENTIALS_RELOAD_S = 60.0  # read again regardless (a write that bypassed updated_at)
# A device whose credentials the input does not know, or that fail, makes the input read
# the registry's credentials again before it answers 401, so credentials issued a moment
# ago work at once: one read at a time, shared by every request waiting for it, at most
# one per SYNC_GAP_S (a fingerprint query; the hashes are read only when it changed), and
# per device at most once per RECHECK_DEVICE_S, so a storm of wrong passwords (or of
# made-up users) costs the registry a few cheap queries a second, not one per request.
RECHECK_DEVICE_S = 5.0
RECHECKS_REMEMBERED = 10_000
SYNC_GAP_S = 0.1
REPLAYS_KEPT = 100_000  # idempotency keys remembered (least recently used dropped first)
REPLAY_TTL_S = 24 * 3600.0
MAX_REFUSALS_LISTED = 100


class _Ticket:
    """The ``connection`` of a message this input delivered: what ``ack`` resolves."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[list[Reject]]) -> None:
        self.future = future


class _Replay:
    __slots__ = ("digest", "expires", "future", "response")

    def __init__(self, digest: bytes, future: asyncio.Future[list[Reject]]) -> None:
        self.digest = digest
        self.future = future
        self.response: Response | None = None
        self.expires = time.monotonic() + REPLAY_TTL_S


def _json(status: int, body: bytes, **headers: str) -> Response:
    return Response(status, body, PROBLEM if status >= 400 else "application/json", headers)


class HttpInput:
    """While entered, listens on ``ingest_http_host:ingest_http_port``."""

    name = "http"

    def __init__(self, context: InputContext) -> None:
        s = self.settings = context.settings
        self._deliver = context.deliver
        self._hurry = context.hurry
        self._devices = context.devices
        self._stats = context.stats
        self._server = HttpServer(
            self.handle, s.ingest_http_host, s.ingest_http_port, s.ingest_http_max_body_bytes
        )
        self._integrations = {
            name: secret.get_secret_value().encode()
            for name, secret in s.ingest_http_integrations.items()
        }
        self._hashes: dict[str, str] = {}
        self._rechecked: OrderedDict[str, float] = OrderedDict()  # device -> when
        self._sync_task: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[None]] = {}  # device -> its recheck
        self._sync_started = float("-inf")
        self._fingerprint: tuple[object, ...] | None = None
        self._loaded_at = float("-inf")
        self._replays: OrderedDict[tuple[str, str], _Replay] = OrderedDict()
        self._paused = False
        self._waiting = 0
        self._next_arrival = 0
        self._refresher: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    @property
    def port(self) -> int:
        return self._server.port

    # -- the Input interface ---------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self._load_credentials()
        self._refresher = asyncio.create_task(self._refresh_forever(), name="http-credentials")
        await self._server.__aenter__()
        log.info("HTTP input listening on %s:%d", self.settings.ingest_http_host, self.port)
        self._listening.set()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in (self._refresher, self._sync_task, *self._pending.values()):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._server.__aexit__(*exc)

    async def ready(self) -> None:
        await self._listening.wait()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def ack(self, batch: Sequence[InboundMessage], outcome: BatchOutcome) -> None:
        for message in batch:
            ticket = message.connection
            if type(ticket) is _Ticket and not ticket.future.done():
                ticket.future.set_result(outcome.refused(message))

    # -- credentials -----------------------------------------------------------------------
    async def _load_credentials(self) -> None:
        engine = self._devices.engine
        fingerprint = await devices_fingerprint(engine)
        now = time.monotonic()
        if fingerprint != self._fingerprint or now - self._loaded_at >= CREDENTIALS_RELOAD_S:
            self._hashes = await broker_entries(engine)
            self._fingerprint, self._loaded_at = fingerprint, now

    async def _refresh_forever(self) -> None:
        """Credentials issued or revoked in the registry count within a few seconds; an
        unreachable registry keeps the last ones (the ingester raises the alarm)."""
        while True:
            await asyncio.sleep(CREDENTIALS_CHECK_S)
            try:
                await self._load_credentials()
            except Exception as exc:
                log.debug("HTTP input: credentials not refreshed: %r", exc)

    def _may_recheck(self, key: str) -> bool:
        """Whether the registry may be asked again about ``key`` (a device) now; a yes is
        booked at once, so concurrent requests of one device ask once."""
        now = time.monotonic()
        last = self._rechecked.get(key)
        if last is not None and now - last < RECHECK_DEVICE_S:
            return False
        self._rechecked[key] = now
        self._rechecked.move_to_end(key)
        while len(self._rechecked) > RECHECKS_REMEMBERED:
            self._rechecked.popitem(last=False)
        return True

    async def _sync(self) -> None:
        """The registry's credentials and sensors read again if they changed, by a read
        that began after this call: one read at a time, shared by all who wait for it."""
        arrived = time.monotonic()
        while True:
            task = self._sync_task
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(task)
                if self._sync_started >= arrived:
                    return
                continue
            wait = self._sync_started + SYNC_GAP_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self._sync_started = time.monotonic()
            self._sync_task = asyncio.create_task(self._sync_once(), name="http-credentials-now")
            self._sync_task.add_done_callback(self._synced)

    def _synced(self, task: asyncio.Task[None]) -> None:
        self._sync_task = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("HTTP input: registry not read at login: %r", task.exception())

    async def _sync_once(self) -> None:
        self._stats.http_registry_lookups += 1
        await self._load_credentials()
        await self._devices.refresh(check_now=True)

    async def _sync_for(self, key: str) -> None:
        """A registry read on behalf of ``key`` (a device) within its rate limit; while
        one is pending, the key's other requests wait for it rather than go without."""
        pending = self._pending.get(key)
        if pending is None and self._may_recheck(key):
            pending = self._pending[key] = asyncio.ensure_future(self._sync())
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        if pending is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)

    async def _recheck(self, device_id: str, secret: str) -> bool:
        """Whether ``secret`` is the device's password by the registry read now
        (credentials issued or rotated since the last read), when the limits allow. The
        device's other requests meanwhile wait for the same read (a device that just got
        its password may send several at once; each would be a 401 otherwise)."""
        await self._sync_for(device_id)
        encoded = self._hashes.get(device_id)
        return encoded is not None and verify(secret, encoded)

    async def _known(self, device_id: str) -> None:
        """A device that logged in but that the registry cache does not know yet (it was
        registered a moment ago) is read now, so its readings are not refused as
        ``unknown_sensor``."""
        devices = self._devices
        if devices.get(device_id) is not None or devices.is_gateway(device_id):
            return
        await self._sync_for(f"cache:{device_id}")

    async def _authenticate(self, route: Route, headers: dict[str, str]) -> str | Response:
        """The principal (``device:<id>`` or ``integration:<name>``), or the refusal."""
        given = credentials(headers)
        challenge = {"www-authenticate": 'Basic realm="sensornet", charset="UTF-8"'}
        if given is None:
            return self._refuse(401, "Credentials required", "send HTTP Basic (device id and "
                                "its MQTT password) or an integration's Bearer token",
                                "no_credentials", **challenge)  # fmt: skip
        user, secret = given
        # an integration: Bearer token, or Basic with the integration's name as user
        for name in [user] if user is not None else list(self._integrations):
            token = self._integrations.get(name)
            if token is not None and hmac.compare_digest(token, secret.encode()):
                if route.auth == "integration" and route.name != name:
                    return self._refuse(403, "Not this integration's route",
                                        f"credentials of integration {name!r} cannot push "
                                        f"to {route.name!r}", "forbidden")  # fmt: skip
                return f"integration:{name}"
        per_device = route.auth == "device" or route.fmt in DEVICE_FORMATS
        if not per_device or user is None:
            return self._refuse(401, "Bad credentials", "unknown integration or wrong token",
                                "bad_credentials", **challenge)  # fmt: skip
        login = user
        if route.auth == "integration":
            user = self._node_login(login)
        encoded = self._hashes.get(user)
        known = encoded is not None and verify(secret, encoded)
        known = known or await self._recheck(user, secret)
        if not known and route.auth == "integration" and self._node_login(login) != user:
            user = self._node_login(login)  # a node registered a moment ago, by its chip id
            encoded = self._hashes.get(user)
            known = encoded is not None and verify(secret, encoded)
        if not known:
            return self._refuse(401, "Bad credentials", "unknown device or wrong password",
                                "bad_credentials", **challenge)  # fmt: skip
        if route.auth == "device" and user != route.name:
            return self._refuse(403, "Not this device's route",
                                f"credentials of {user!r} cannot push for {route.name!r}",
                                "forbidden")  # fmt: skip
        await self._known(user)
        return f"device:{user}"

    def _node_login(self, user: str) -> str:
        """A node may log in as its registry id, or as the firmware names it
        (``esp8266-<chip id>``, its ``X-Sensor``): that is resolved to the id."""
        chip = node_of_login(user)
        if chip is None or user in self._hashes:
            return user
        device = self._devices.resolve("sc_chip", chip)
        return user if device is None else device.id

    def _own_node(self, device_id: str, body: bytes, headers: dict[str, str]) -> Response | None:
        """A device's own credentials on an integration route (``DEVICE_FORMATS``) push
        its own readings only: the node the push names must be the one logged in."""
        chip = pushed_chip(body, headers.get("x-sensor"))
        if chip is None:
            return None  # names no node: the decoder refuses it with its reason
        device = self._devices.get(device_id)
        if device is None or device.sc_chip != chip:
            mine = "no node" if device is None or not device.sc_chip else device.sc_chip
            return self._refuse(403, "Not this node's push", f"credentials of {device_id!r} "
                                f"(chip {mine}) cannot push for node {chip!r}; register the "
                                "node's chip id (sc_chip) on its sensor", "forbidden")  # fmt: skip
        return None

    # -- requests --------------------------------------------------------------------------
    def _refuse(
        self, status: int, title: str, detail: str, reason: str, **headers: str
    ) -> Response:
        self._stats.http_refused[reason] += 1
        return _json(status, problem(status, title, detail, reason), **headers)

    async def handle(self, request: Request) -> Response:
        self._stats.http_requests += 1
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            return _json(
                200, b'{"status":"ok","paused":%s}' % (b"true" if self._paused else b"false")
            )
        route = route_of(request.path)
        if route is not None and route.kind == "format" and request.query:
            route = replace(route, query=request.query[:200])
        if route is None:
            return self._refuse(404, "No such route", "POST to /v1/devices/<id>/readings, "
                                "/v1/devices/<id>/pack or /v1/integrations/<name>/<format>",
                                "no_route")  # fmt: skip
        if request.method != "POST":
            return self._refuse(405, "Method not allowed", "use POST", "method", allow="POST")
        principal = await self._authenticate(route, request.headers)
        if isinstance(principal, Response):
            return principal
        fmt = self._format(route, request.headers)
        if isinstance(fmt, Response):
            return fmt
        body = self._body(request)
        if isinstance(body, Response):
            return body
        if route.auth == "integration" and principal.startswith("device:"):
            foreign = self._own_node(principal.removeprefix("device:"), body, request.headers)
            if foreign is not None:
                return foreign
        passed = header_segments(fmt, request.headers)
        if passed is None:
            return self._refuse(400, "Bad header", f"a header {fmt} reads holds characters "
                                "other than A-Z a-z 0-9 _ . : -", "bad_header")  # fmt: skip
        if passed:  # the decoder reads them from the topic (sensornet.formats.FORMAT_HEADERS)
            route = dataclasses.replace(route, fmt=route.fmt + passed)
        key = request.headers.get("idempotency-key")
        if key is not None:
            return await self._idempotent(principal, key, route, fmt, body, request.path)
        return await self._push(route, fmt, body)

    def _format(self, route: Route, headers: dict[str, str]) -> str | Response:
        if route.kind == "format":
            if route.fmt not in FORMATS:
                return self._refuse(404, "Unknown format", f"no decoder for {route.fmt!r}; "
                                    f"known: {', '.join(sorted(FORMATS)) or 'none'}",
                                    "unknown_format")  # fmt: skip
            return route.fmt
        kind = media_type(headers)
        fmt = FORMAT_TYPES.get(kind)
        if fmt is not None and fmt in FORMATS:
            return fmt
        if kind in JSON_TYPES:
            return ""
        return self._refuse(415, "Unsupported content type", f"{kind!r:.80}: send "
                            "application/json (readings, packs, SenML JSON) or "
                            "application/senml+cbor",
                            "unsupported_media_type")  # fmt: skip

    def _body(self, request: Request) -> bytes | Response:
        body = request.body
        limit = self.settings.ingest_max_payload_bytes
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding == "gzip":
            inflate = zlib.decompressobj(wbits=31)
            try:
                body = inflate.decompress(body, limit + 1)
            except zlib.error as exc:
                return self._refuse(400, "Bad gzip body", str(exc)[:200], "bad_gzip")
            if len(body) > limit or inflate.unconsumed_tail:
                return self._refuse(413, "Payload too large",
                                    f"inflated body exceeds {limit} bytes", "oversize")  # fmt: skip
        elif encoding not in ("identity", ""):
            return self._refuse(415, "Unsupported content encoding",
                                f"{encoding!r:.40}: send identity or gzip",
                                "unsupported_encoding")  # fmt: skip
        if not body:
            return self._refuse(400, "Empty body", "the request carries no readings", "no_values")
        if len(body) > limit:
            return self._refuse(413, "Payload too large", f"{len(body)} bytes exceed {limit}",
                                "oversize")  # fmt: skip
        return body

    def _message(self, route: Route, fmt: str, body: bytes) -> InboundMessage:
        if route.auth == "device":
            topic = device_topic(self.settings.topic_prefix, route.name, route.kind)  # type: ignore[arg-type]
        else:
            # the query goes with the topic: ChirpStack's HTTP integration names the event
            # in it (?event=up), and its decoder reads it there
            topic = f"http/{route.name}/{route.fmt}" + (f"?{route.query}" if route.query else "")
        # arrival times one apart per 8 payload bytes (as the MQTT input's): readings
        # stamped with their arrival never share a timestamp
        arrived = max(time.time_ns(), self._next_arrival)
        self._next_arrival = arrived + (len(body) >> 3) + 1
        future: asyncio.Future[list[Reject]] = asyncio.get_running_loop().create_future()
        return InboundMessage(topic, body, None, _Ticket(future), arrived, fmt)

    def _busy(self) -> Response | None:
        if self._paused:
            return self._refuse(503, "Ingester busy", "the ingester is catching up; retry "
                                "(requests are idempotent)", "backpressure",
                                **{"retry-after": "1"})  # fmt: skip
        if self._waiting >= self.settings.ingest_http_max_waiting:
            return self._refuse(429, "Too many requests", f"{self._waiting} requests wait to "
                                "be durable; retry", "too_many_requests",
                                **{"retry-after": "1"})  # fmt: skip
        return None

    async def _push(self, route: Route, fmt: str, body: bytes) -> Response:
        busy = self._busy()
        if busy is not None:
            return busy
        message = self._message(route, fmt, body)
        self._deliver([message], len(body))
        self._hurry()
        assert type(message.connection) is _Ticket
        return await self._answer(message.connection.future)

    async def _answer(self, future: asyncio.Future[list[Reject]]) -> Response:
        self._waiting += 1
        try:
            async with asyncio.timeout(self.settings.ingest_http_wait_s):
                refused = await asyncio.shield(future)
        except TimeoutError:
            return self._refuse(503, "Not durable yet", "the readings were not made durable "
                                f"within {self.settings.ingest_http_wait_s} s; retry (an "
                                "Idempotency-Key makes any retry safe)", "not_durable",
                                **{"retry-after": "5"})  # fmt: skip
        finally:
            self._waiting -= 1
        return self._result(refused)

    def _result(self, refused: list[Reject]) -> Response:
        if not refused:
            return _json(200, b'{"durable":true,"refused":0}')
        total = sum(r.count for r in refused)
        listed = [
            {"reason": r.reason, "detail": r.detail, "count": r.count, "sensor": r.named or
             r.device_id, **({"seq": r.seq} if r.seq is not None else {})}
            for r in refused[:MAX_REFUSALS_LISTED]
        ]  # fmt: skip
        self._stats.http_refused["refused_readings"] += 1
        detail = (
            f"{total} reading(s) refused and kept as dead letters; the others of this "
            "request are durable"
        )
        body = problem(422, "Readings refused", detail, refused[0].reason, durable=True,
                       refused_total=total, refused=listed)  # fmt: skip
        return _json(422, body)

    async def _idempotent(
        self, principal: str, key: str, route: Route, fmt: str, body: bytes, path: str
    ) -> Response:
        """The first request with this key is delivered; a retry with the same key and body
        waits for or answers its result without delivering again (the IETF HTTPAPI
        Idempotency-Key draft); the same key with another body is refused."""
        if not key or len(key) > MAX_IDEMPOTENCY_KEY:
            return self._refuse(400, "Bad Idempotency-Key", f"1-{MAX_IDEMPOTENCY_KEY} "
                                "characters", "bad_idempotency_key")  # fmt: skip
        digest = hashlib.sha256(path.encode() + b"\0" + fmt.encode() + b"\0" + body).digest()
        replays = self._replays
        now = time.monotonic()
        while replays:  # drop what expired, oldest first
            oldest = next(iter(replays.values()))
            if oldest.expires > now and len(replays) < REPLAYS_KEPT:
                break
            replays.popitem(last=False)
        entry = replays.get((principal, key))
        if entry is not None:
            if entry.digest != digest:
                return self._refuse(422, "Idempotency-Key reused", "this key was used with "
                                    "another request body", "idempotency_key_reused")  # fmt: skip
            replays.move_to_end((principal, key))
            response = entry.response or await self._answer(entry.future)
            if entry.response is None and response.status != 503:
                entry.response = response
            return Response(response.status, response.body, response.content_type,
                            {**response.headers, "idempotent-replayed": "true"})  # fmt: skip
        busy = self._busy()
        if busy is not None:
            return busy
        message = self._message(route, fmt, body)
        assert type(message.connection) is _Ticket
        entry = replays[(principal, key)] = _Replay(digest, message.connection.future)
        self._deliver([message], len(body))
        self._hurry()
        response = await self._answer(entry.future)
        if response.status != 503:
            entry.response = response
        return response


def build(context: InputContext) -> HttpInput:
    return HttpInput(context)
