"""Schemathesis fuzzes the real API process (``sensornet api``, a real registry, broker and
InfluxDB) from its OpenAPI document, with every check (no 5xx; statuses, content types,
headers and bodies as documented; Allow headers; schema-valid data accepted, invalid data
refused; auth not ignored; resources usable after creation...), stateless phases
(examples, coverage, fuzzing) and the stateful one (operations chained by the links it
infers), bounded and seeded so a run is short and repeatable. It must find nothing.

Only ``DELETE /keys/{key_id}`` is left out: revoking keys could revoke the key the fuzzer
calls with; ``test_hardening_api.py`` tests it on its own (the last admin key stays)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

from api_process import ApiProcess

from sensornet.catalogue import load_catalogue
from sensornet.influx import InfluxClient
from sensornet.settings import Settings
from sensornet.storage_layout import apply_storage_layout
from wiring.parts import default_fleet, register_fleet

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES_PER_OPERATION = 5


def schemathesis(
    base: str, key: str, phases: str, report: Path
) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    args = [str(st), "--config-file", str(CONFIG), "run", f"{base}/openapi.json"]
    args += ["--checks", "all", "--phases", phases, "--seed", "151"]
    args += ["--max-examples", str(EXAMPLES_PER_OPERATION), "--workers", "1"]
    args += ["--exclude-path", "/keys/{key_id}"]
    args += ["-H", f"Authorization: Bearer {key}", "--request-timeout", "20"]
    args += ["--suppress-health-check", "all", "--no-color", "--max-failures", "50"]
    args += ["--report", "junit", "--report-junit-path", str(report)]
    # in the test's own directory: schemathesis keeps a crash cache in its working one
    return subprocess.run(
        args, capture_output=True, text=True, timeout=900, check=False, cwd=report.parent
    )


async def test_schemathesis_finds_nothing(
    settings: Settings, influx: InfluxClient, api_keys: dict[str, str]
) -> None:
    catalogue = load_catalogue()
    await apply_storage_layout(influx, settings, catalogue)
    await register_fleet(settings, default_fleet(6))
    with ApiProcess(settings) as api:
        # at least: cases generated (it really ran; stateful ones are whole scenarios)
        for phases, at_least in (("examples,coverage,fuzzing", 1000), ("stateful", 20)):
            report = settings.state_dir / f"schemathesis-{phases.replace(',', '-')}.xml"
            run = await asyncio.to_thread(schemathesis, api.base, api_keys["admin"], phases, report)
            output = run.stdout + run.stderr
            (settings.state_dir / f"schemathesis-{phases}.txt").write_text(output)
            assert run.returncode == 0, output[-12000:]
            tested = re.search(r"(\d+) generated", output)
            assert tested and int(tested.group(1)) >= at_least, output[-3000:]
