"""Draw where each panel of the generated dashboards sits, as SVG, for docs/operations.md:
`.venv/bin/python scripts/dashboard_layout.py` writes docs/images/layout-<uid>.svg.

A layout plan from the dashboards' own JSON (each panel's gridPos, type and title), not a
picture of Grafana: no Grafana server can run where this project is built, so no
screenshot of a dashboard exists. The drawing says so in its caption."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from dashboards.build import build_dashboards

COL, ROW = 40, 26  # pixels per grid column (24 across) and per grid row
UIDS = ("sn-city", "sn-platform")


def layout_svg(board: dict[str, Any]) -> str:
    panels = board["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    width, height = 24 * COL, rows * ROW + 60
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="#f4f5f7"/>',
        f'<text x="8" y="20" font-size="15" font-weight="bold">{escape(board["title"])}</text>',
        f'<text x="8" y="{height - 10}" fill="#666">Layout plan drawn from the generated '
        "dashboard JSON (panel positions, types, titles) — not a Grafana screenshot.</text>",
    ]
    for p in panels:
        g = p["gridPos"]
        x, y, w, h = g["x"] * COL, g["y"] * ROW + 30, g["w"] * COL, g["h"] * ROW
        out.append(
            f'<rect x="{x + 3}" y="{y + 3}" width="{w - 6}" height="{h - 6}" rx="4" '
            'fill="#ffffff" stroke="#8a8f98"/>'
        )
        out.append(f'<text x="{x + 12}" y="{y + 22}">{escape(p["title"])}</text>')
        out.append(f'<text x="{x + 12}" y="{y + 40}" fill="#666">{escape(p["type"])}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    boards = build_dashboards()
    folder = Path(__file__).parent.parent / "docs" / "images"
    for uid in UIDS:
        (folder / f"layout-{uid}.svg").write_text(layout_svg(boards[uid]), encoding="utf-8")


if __name__ == "__main__":
    main()
