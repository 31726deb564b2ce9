"""The routing file (``sensornet/data/routing.yaml``): who is told about which alarm, as
data, and the Alertmanager configuration generated from it. Pure: loading validates and
raises ``ConfigError`` naming the file and the field; generation returns a dict.

Alertmanager does the routing, grouping, repeating and inhibition (a real notification
router, not a home-made one); this module only translates the district's list of who
gets what into its configuration, so an operator edits one short file instead of
Alertmanager's route tree, and secrets never enter the generated file."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from sensornet.errors import ConfigError

Kind = Literal["email", "webhook", "wecom", "dingtalk"]
KINDS: tuple[Kind, ...] = ("email", "webhook", "wecom", "dingtalk")
#: robots Alertmanager 0.25 cannot post to itself: it posts to the project's relay
RELAYED: frozenset[str] = frozenset({"wecom", "dingtalk"})
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True, slots=True)
class Receiver:
    name: str
    kind: Kind
    to: tuple[str, ...] = ()  # email
    url: str = ""  # webhook
    send_resolved: bool = True


@dataclass(frozen=True, slots=True)
class Route:
    match: dict[str, tuple[str, ...]]
    receivers: tuple[str, ...]
    repeat_interval: str | None = None


@dataclass(frozen=True, slots=True)
class Inhibit:
    source: dict[str, tuple[str, ...]]
    target: dict[str, tuple[str, ...]]
    equal: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Routing:
    group_by: tuple[str, ...]
    group_wait: str
    group_interval: str
    repeat_interval: str
    receivers: dict[str, Receiver]
    routes: tuple[Route, ...]
    default: tuple[str, ...]
    inhibit: tuple[Inhibit, ...] = field(default=())

    def secrets_needed(self) -> list[str]:
        """Names of the secrets (``SENSORNET_ALERT_SECRETS`` keys) the receivers use."""
        out: list[str] = []
        for r in self.receivers.values():
            if r.kind in RELAYED:
                out.append(f"{r.name}.url")
            if r.kind == "dingtalk":
                out.append(f"{r.name}.secret")
        return out


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"routing file {where}: {message}")


def _matchers(where: str, raw: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict) or not raw:
        raise _fail(where, "must be a non-empty mapping of label -> value or list of values")
    out: dict[str, tuple[str, ...]] = {}
    for label, values in raw.items():
        if not isinstance(label, str) or not _LABEL.match(label):
            raise _fail(where, f"{label!r} is not a label name")
        seq = values if isinstance(values, list) else [values]
        if not seq or not all(isinstance(v, str | int) and str(v) for v in seq):
            raise _fail(where, f"{label}: values must be non-empty strings")
        out[label] = tuple(str(v) for v in seq)
    return out


def _duration(where: str, raw: object) -> str:
    if not isinstance(raw, str) or not _DURATION.match(raw):
        raise _fail(where, f"{raw!r} is not a duration like 30s, 5m, 4h")
    return raw


def _receiver(name: object, raw: object) -> Receiver:
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail("receivers", f"{name!r}: names are lower-case letters, digits, - and _")
    where = f"receivers.{name}"
    if not isinstance(raw, dict):
        raise _fail(where, "must be a mapping with one of " + ", ".join(KINDS))
    raw = dict(raw)
    send_resolved = raw.pop("send_resolved", True)
    if not isinstance(send_resolved, bool):
        raise _fail(where, "send_resolved must be true or false")
    if len(raw) != 1 or next(iter(raw)) not in KINDS:
        raise _fail(where, f"exactly one kind of {', '.join(KINDS)}, got {sorted(raw)}")
    kind: Kind = next(iter(raw))
    body = raw[kind] if raw[kind] is not None else {}
    if not isinstance(body, dict):
        raise _fail(f"{where}.{kind}", "must be a mapping")
    if kind == "email":
        to = body.get("to")
        if not isinstance(to, list) or not to or not all(_EMAIL.match(str(a)) for a in to):
            raise _fail(f"{where}.email.to", "a non-empty list of e-mail addresses")
        return Receiver(name, kind, to=tuple(map(str, to)), send_resolved=send_resolved)
    if kind == "webhook":
        url = body.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^\s]+$", url):
            raise _fail(f"{where}.webhook.url", "an http(s) URL")
        return Receiver(name, kind, url=url, send_resolved=send_resolved)
    if body:
        raise _fail(f"{where}.{kind}", "takes no fields: its URL and secret are secrets")
    return Receiver(name, kind, send_resolved=send_resolved)


def parse_routing(doc: object, where: str = "routing.yaml") -> Routing:
    """Validate a parsed routing document; every problem names its field."""
    if not isinstance(doc, dict):
        raise _fail(where, "must be a mapping")
    if doc.get("version") != 1:
        raise _fail(where, "version: 1 expected")
    raw_receivers = doc.get("receivers")
    if not isinstance(raw_receivers, dict) or not raw_receivers:
        raise _fail(where, "receivers: at least one")
    receivers = {str(n): _receiver(n, r) for n, r in raw_receivers.items()}

    def known(at: str, names: object) -> tuple[str, ...]:
        if not isinstance(names, list) or not names:
            raise _fail(at, "a non-empty list of receiver names")
        unknown = sorted(str(n) for n in names if n not in receivers)
        if unknown:
            raise _fail(at, f"unknown receivers {unknown}; known: {sorted(receivers)}")
        return tuple(str(n) for n in names)

    routes: list[Route] = []
    raw_routes = doc.get("routes", []) or []
    if not isinstance(raw_routes, list):
        raise _fail("routes", "must be a list")
    for i, r in enumerate(raw_routes):
        at = f"routes[{i}]"
        if not isinstance(r, dict) or set(r) - {"match", "receivers", "repeat_interval"}:
            raise _fail(at, "fields: match, receivers, repeat_interval")
        repeat = r.get("repeat_interval")
        routes.append(
            Route(
                _matchers(f"{at}.match", r.get("match")),
                known(f"{at}.receivers", r.get("receivers")),
                _duration(f"{at}.repeat_interval", repeat) if repeat is not None else None,
            )
        )
    inhibit: list[Inhibit] = []
    for i, r in enumerate(doc.get("inhibit", []) or []):
        at = f"inhibit[{i}]"
        if not isinstance(r, dict):
            raise _fail(at, "fields: source, target, equal")
        equal = r.get("equal", [])
        if not isinstance(equal, list) or not all(_LABEL.match(str(e)) for e in equal):
            raise _fail(f"{at}.equal", "a list of label names")
        inhibit.append(
            Inhibit(
                _matchers(f"{at}.source", r.get("source")),
                _matchers(f"{at}.target", r.get("target")),
                tuple(map(str, equal)),
            )
        )
    group_by = doc.get("group_by", ["alertname"])
    if not isinstance(group_by, list) or not all(_LABEL.match(str(g)) for g in group_by):
        raise _fail("group_by", "a list of label names")
    return Routing(
        group_by=tuple(map(str, group_by)),
        group_wait=_duration("group_wait", doc.get("group_wait", "30s")),
        group_interval=_duration("group_interval", doc.get("group_interval", "5m")),
        repeat_interval=_duration("repeat_interval", doc.get("repeat_interval", "4h")),
        receivers=receivers,
        routes=tuple(routes),
        default=known("default", doc.get("default")),
        inhibit=tuple(inhibit),
    )


def load_routing(path: Path | None = None) -> Routing:
    """The routing file at ``path``, or the shipped one."""
    if path is None:
        resource = resources.files("sensornet") / "data" / "routing.yaml"
        text, where = resource.read_text(encoding="utf-8"), "sensornet/data/routing.yaml"
    else:
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise ConfigError(f"routing file {path}: {exc.strerror}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"routing file {where}: not YAML: {exc}") from exc
    return parse_routing(doc, where)


def _am_matchers(m: dict[str, tuple[str, ...]]) -> list[str]:
    """Alertmanager matcher strings; several values become one anchored regex."""
    out = []
    for label, values in sorted(m.items()):
        if len(values) == 1:
            out.append(f"{label}={_quote(values[0])}")
        else:
            out.append(f"{label}=~{_quote('|'.join(re.escape(v) for v in values))}")
    return out


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the generated configuration sends what it cannot hold itself."""

    relay_url: str  # the project's WeCom/DingTalk relay, e.g. http://127.0.0.1:9097
    smtp_smarthost: str
    smtp_from: str
    smtp_user: str = ""
    smtp_require_tls: bool = True
    #: secret name -> path of the 0600 file holding it (smtp.password, <webhook>.token)
    secret_files: dict[str, str] = field(default_factory=dict)


def _receiver_config(r: Receiver, delivery: Delivery) -> dict[str, Any]:
    if r.kind == "email":
        email: dict[str, Any] = {"to": ", ".join(r.to), "send_resolved": r.send_resolved}
        return {"email_configs": [email]}
    if r.kind == "webhook":
        hook: dict[str, Any] = {"url": r.url, "send_resolved": r.send_resolved}
        token = delivery.secret_files.get(f"{r.name}.token")
        if token:
            hook["http_config"] = {"authorization": {"credentials_file": token}}
        return {"webhook_configs": [hook]}
    relay = f"{delivery.relay_url.rstrip('/')}/robot/{r.name}"
    return {"webhook_configs": [{"url": relay, "send_resolved": r.send_resolved}]}


def alertmanager_config(routing: Routing, delivery: Delivery) -> dict[str, Any]:
    """Alertmanager 0.25's configuration for this routing.

    One Alertmanager receiver per route, holding the configs of all its receivers, so a
    route that names three receivers notifies all three; every route has ``continue``, so
    every matching route notifies; the root's receiver (the default list) gets what no
    route took."""
    am_receivers: list[dict[str, Any]] = []

    def combined(name: str, names: tuple[str, ...]) -> str:
        merged: dict[str, Any] = {"name": name}
        for n in names:
            for key, configs in _receiver_config(routing.receivers[n], delivery).items():
                merged.setdefault(key, []).extend(configs)
        am_receivers.append(merged)
        return name

    routes = []
    for i, route in enumerate(routing.routes):
        am_route: dict[str, Any] = {
            "receiver": combined(f"route-{i}-{'+'.join(route.receivers)}", route.receivers),
            "matchers": _am_matchers(route.match),
            "continue": True,
        }
        if route.repeat_interval:
            am_route["repeat_interval"] = route.repeat_interval
        routes.append(am_route)
    root_receiver = combined(f"default-{'+'.join(routing.default)}", routing.default)
    global_: dict[str, Any] = {"smtp_from": delivery.smtp_from, "resolve_timeout": "5m"}
    if any(r.kind == "email" for r in routing.receivers.values()):
        global_["smtp_smarthost"] = delivery.smtp_smarthost
        global_["smtp_require_tls"] = delivery.smtp_require_tls
        if delivery.smtp_user:
            global_["smtp_auth_username"] = delivery.smtp_user
            if "smtp.password" in delivery.secret_files:
                global_["smtp_auth_password_file"] = delivery.secret_files["smtp.password"]
    return {
        "global": global_,
        "route": {
            "receiver": root_receiver,
            "group_by": list(routing.group_by),
            "group_wait": routing.group_wait,
            "group_interval": routing.group_interval,
            "repeat_interval": routing.repeat_interval,
            "routes": routes,
        },
        "inhibit_rules": [
            {
                "source_matchers": _am_matchers(i.source),
                "target_matchers": _am_matchers(i.target),
                "equal": list(i.equal),
            }
            for i in routing.inhibit
        ],
        "receivers": am_receivers,
    }
