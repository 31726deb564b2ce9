"""Validate every generated Grafana object against Grafana's published JSON schemas.

Usage: ``.venv/bin/python scripts/grafana_schema_check.py FOLDER`` where FOLDER holds
``dashboard.jsonschema.json``, ``geomap.jsonschema.json`` and ``alerting.jsonschema.json``
from the ``jsonschema/`` folder of the grafana-foundation-sdk repository, on the branch of
the Grafana version the SDK build targets (``v11.6.x+cog-v0.0.x`` for the pinned
1769699379!11.6.0). The schemas are not shipped in this repository (third-party files);
the SDK round-trip test (tests/test_dashboards_sdk.py) runs in the suite.

Prints one JSON line: objects checked, errors, and the known divergences, where Grafana's
real format differs from that schema: a threshold's base step has ``"value": null``
(Grafana writes -Infinity as null; the schema says number; the SDK's builders write it
too), a ``byName`` override matcher's options is the field's name (a string, as the SDK's
``override_by_name`` writes it; the schema says object), the geomap view's centre is in
decimal degrees (the schema says integer), and the Alertmanager contact point's type is
``prometheus-alertmanager``, the id Grafana registers (the schema's enum says
"alertmanager", which Grafana refuses: grafana/grafana-operator#1548). Exits 1 on any
other error."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema

from dashboards.build import build_dashboards
from dashboards.notifications import contact_point, notification_policy
from dashboards.panels import to_json
from dashboards.provisioning import alert_rule_models
from sensornet.alarms.rules import load_rules


def _known(error: jsonschema.ValidationError) -> str | None:
    path = [str(p) for p in error.absolute_path]
    if error.instance is None and "thresholds" in path and path[-1] == "value":
        return "threshold base step value null"
    if "matcher" in path and path[-1] == "options" and isinstance(error.instance, str):
        return "byName matcher options is a string"
    if path[-2:] in (["view", "lat"], ["view", "lon"]) and isinstance(error.instance, float):
        return "map view lat/lon are decimal degrees"
    if path == ["type"] and error.instance == "prometheus-alertmanager":
        return "contact point type prometheus-alertmanager"
    return None


def _errors(schema: dict[str, Any], definition: str, obj: Any) -> list[jsonschema.ValidationError]:
    root = schema | {"$ref": f"#/definitions/{definition}"}
    out: list[jsonschema.ValidationError] = []
    for error in jsonschema.Draft7Validator(root).iter_errors(obj):
        # a panel is "Panel or RowPanel": look inside the Panel branch for the real cause
        out.extend([e for e in (error.context or []) if e.relative_schema_path[0] == 0] or [error])
    return out


def main(folder: Path) -> int:
    schemas = {
        name: json.loads((folder / f"{name}.jsonschema.json").read_text(encoding="utf-8"))
        for name in ("dashboard", "geomap", "alerting")
    }
    checked, errors, known = 0, [], {}
    found: list[tuple[str, jsonschema.ValidationError]] = []
    for uid, board in build_dashboards().items():
        checked += 1
        found += [(uid, e) for e in _errors(schemas["dashboard"], "Dashboard", board)]
        for p in board["panels"]:
            if p["type"] == "geomap":
                found += [(uid, e) for e in _errors(schemas["geomap"], "Options", p["options"])]
    for rule in alert_rule_models(load_rules()):
        checked += 1
        found += [(str(rule.uid), e) for e in _errors(schemas["alerting"], "Rule", to_json(rule))]
    for definition, obj in (
        ("ContactPoint", contact_point("http://alertmanager:9093")),
        ("NotificationPolicy", notification_policy()),
    ):
        checked += 1
        found += [(definition, e) for e in _errors(schemas["alerting"], definition, to_json(obj))]
    for where, error in found:
        kind = _known(error)
        if kind:
            known[kind] = known.get(kind, 0) + 1
        else:
            path = "/".join(str(p) for p in error.absolute_path)
            errors.append(f"{where} {path}: {error.message[:200]}")
    print(json.dumps({"checked": checked, "errors": errors, "known_divergences": known}))
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
