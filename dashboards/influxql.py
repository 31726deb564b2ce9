"""An InfluxQL query (Grafana's ``influxdb`` data source, raw query mode) as a
grafana-foundation-sdk data query.

The SDK ships typed queries for many data sources but none for InfluxDB (checked in
1769699379!11.6.0 and in the newest build, docs/decisions.md "Operations view"), so this
is the SDK's extension point for one: a ``Dataquery`` variant with ``to_json`` /
``from_json``, a builder, and a runtime registration so that the SDK's own
``Dashboard.from_json`` reads our targets back as this type instead of an untyped bag.
The fields are those of Grafana's InfluxDB query model (public/app/plugins/datasource/
influxdb/types.ts) that a raw query uses."""

from __future__ import annotations

import typing

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard

ResultFormat = typing.Literal["time_series", "table", "logs"]
IDENTIFIER = "influxdb"


class InfluxQuery(cogvariants.Dataquery):
    """One InfluxQL target: ``query`` with Grafana's macros, ``rawQuery`` always true."""

    def __init__(
        self,
        ref_id: str = "A",
        query: str = "",
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
        datasource: dashboard.DataSourceRef | None = None,
        hide: bool | None = None,
        raw_query: bool = True,
    ) -> None:
        self.ref_id, self.query, self.result_format = ref_id, query, result_format
        self.alias, self.datasource, self.hide, self.raw_query = alias, datasource, hide, raw_query

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref_id,
            "query": self.query,
            "rawQuery": self.raw_query,
            "resultFormat": self.result_format,
        }
        if self.datasource is not None:
            out["datasource"] = self.datasource
        if self.alias is not None:
            out["alias"] = self.alias
        if self.hide is not None:
            out["hide"] = self.hide
        return out

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> typing.Self:
        known = {"refId", "query", "rawQuery", "resultFormat", "datasource", "alias", "hide"}
        unknown = set(data) - known
        if unknown:  # a typo or a field this model does not carry: say so, lose nothing silently
            raise ValueError(f"InfluxQL query has fields this model does not know: {unknown}")
        ds = data.get("datasource")
        return cls(
            ref_id=data.get("refId", "A"),
            query=data.get("query", ""),
            result_format=data.get("resultFormat", "time_series"),
            alias=data.get("alias"),
            datasource=dashboard.DataSourceRef.from_json(ds) if ds is not None else None,
            hide=data.get("hide"),
            raw_query=data.get("rawQuery", True),
        )


class Influx(cogbuilder.Builder[InfluxQuery]):
    """Builder, in the SDK's style: ``Influx().query("SELECT …").table()``."""

    def __init__(self) -> None:
        self._internal = InfluxQuery()

    def build(self) -> InfluxQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def query(self, query: str) -> typing.Self:
        self._internal.query = query
        return self

    def table(self) -> typing.Self:
        self._internal.result_format = "table"
        return self

    def alias(self, alias: str) -> typing.Self:
        self._internal.alias = alias
        return self

    def datasource(self, ref: dashboard.DataSourceRef) -> typing.Self:
        self._internal.datasource = ref
        return self


def register() -> None:
    """The SDK's panels and queries, and ours, for ``from_json``; idempotent."""
    register_default_plugins()
    cogruntime.Runtime().register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=IDENTIFIER, from_json_hook=InfluxQuery.from_json)
    )
