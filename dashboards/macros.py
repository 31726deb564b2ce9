"""Grafana's InfluxQL macros and template variables, expanded the way Grafana does for a
single-valued variable, so tests (and ``dashboards check``) can run every panel query."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from dashboards.panels import JSON

_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def expand(query: str, variables: Mapping[str, str], time_range: str = "6h",
           interval: str = "1m") -> str:  # fmt: skip
    """``$timeFilter`` → ``time > now() - <range>``, ``$__interval`` → ``<interval>``,
    ``$name`` / ``${name}`` → the variable's value; ``$tag_x`` aliases are left alone."""
    builtins = {
        "timeFilter": f"time > now() - {time_range}",
        "__timeFilter": f"time > now() - {time_range}",
        "__interval": interval,
        "interval": interval,
    }

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in builtins:
            return builtins[name]
        if name in variables:
            return variables[name]
        raise KeyError(f"query uses ${name}, which is neither a macro nor a variable: {query}")

    return _VAR.sub(sub, query)


def panel_queries(board: JSON) -> Iterator[tuple[str, str]]:
    """(panel title, raw query) of every target of every panel."""
    for p in board["panels"]:
        for t in p.get("targets", []):
            yield p["title"], t["query"]


def variable_queries(board: JSON) -> Iterator[tuple[str, str]]:
    for v in board.get("templating", {}).get("list", []):
        if v["type"] == "query":
            yield v["name"], v["query"]
