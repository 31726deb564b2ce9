"""Docs that list things must list all of them."""

from pathlib import Path

from sensornet.settings import Settings

ROOT = Path(__file__).parent.parent


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs/settings.md").read_text()
    missing = [n for n in Settings.model_fields if f"SENSORNET_{n.upper()}" not in text]
    assert not missing, f"document in docs/settings.md: {missing}"
