"""``sensornet dashboards build`` with the map's settings, run as a subprocess: the
basemap and coordinate system come from SENSORNET_MAP_*, and a bad value is one clear
line naming the setting, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def build(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "dashboards", "build", "--out", str(tmp_path / "g")],
        env={**os.environ, "SENSORNET_STATE_DIR": str(tmp_path / "state"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_build_takes_the_basemap_from_the_settings(tmp_path: Path) -> None:
    url = "http://tiles.internal/{z}/{x}/{y}.png"
    result = build(
        tmp_path, SENSORNET_MAP_TILES_URL=url, SENSORNET_MAP_TILES_ATTRIBUTION="© 市测绘院"
    )
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    city = json.loads(next(Path(f) for f in files if f.endswith("sn-city.json")).read_text())
    geomap = next(p for p in city["panels"] if p["type"] == "geomap")
    assert geomap["options"]["basemap"]["config"] == {"url": url, "attribution": "© 市测绘院"}


def _one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert all(w in errors[0] for w in words), errors[0]


def test_a_tile_url_that_is_no_xyz_template_is_refused(tmp_path: Path) -> None:
    result = build(tmp_path, SENSORNET_MAP_TILES_URL="tiles.internal/map.png")
    _one_error_line(result, "SENSORNET_MAP_TILES_URL", "{z}")
    assert not (tmp_path / "g").exists()


def test_an_unknown_coordinate_system_is_refused(tmp_path: Path) -> None:
    _one_error_line(build(tmp_path, SENSORNET_MAP_CRS="bd09"), "SENSORNET_MAP_CRS", "gcj02")
