"""What a sensor looks like on the way in and out: one definition for API, CLI and import."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from sensornet.deveui import InvalidDevEui, normalise_dev_eui

Status = Literal["planned", "installed", "active", "maintenance", "retired"]
SENSOR_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DEV_EUI_DESCRIPTION = "LoRaWAN DevEUI: 16 hex digits, separators allowed; stored upper case, unique"


def _dev_eui(value: object) -> str | None:
    """The canonical DevEUI (``sensornet.deveui``); empty means none."""
    if value is None or value == "":
        return None
    try:
        return normalise_dev_eui(value)  # type: ignore[arg-type]
    except InvalidDevEui as exc:
        raise ValueError(str(exc)) from None


#: RFC 8428 §4.5.1: the characters of a SenML name, and its first one
SENML_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9:./_-]{0,254}$"
SC_CHIP_PATTERN = r"^[0-9A-Za-z]{1,32}$"
SC_CHIP_DESCRIPTION = (
    "Sensor.Community (airrohr) node: the chip id its firmware sends as esp8266id "
    "(X-Sensor: esp8266-<chip id>); unique"
)
SC_LOCATION_PATTERN = r"^[0-9]{1,16}$"
SC_LOCATION_DESCRIPTION = "Sensor.Community node: its location id in the public data API; unique"
SENML_NAME_DESCRIPTION = (
    "The name its SenML packs give it (bn + n up to the quantity), e.g. "
    "urn:dev:ow:10e2073a01080063; unique; unset, the sensor id is its SenML name"
)


class SensorDetails(BaseModel):
    """Fields an engineer may change after registration (all optional on update)."""

    model_config = ConfigDict(extra="forbid")

    gateway_id: str | None = Field(None, max_length=64)
    address: str = Field("", max_length=500)
    description: str = Field("", max_length=2000)
    mounting: str = Field("", max_length=64, description="e.g. pole, wall, manhole, roof")
    installed_on: date | None = None
    commissioned_on: date | None = None
    owner_department: str = Field("", max_length=128)
    firmware: str = Field("", max_length=64)
    dev_eui: str | None = Field(None, max_length=64, description=DEV_EUI_DESCRIPTION)

    _canonical_dev_eui = field_validator("dev_eui", mode="before")(_dev_eui)
    senml_name: str | None = Field(
        None, pattern=SENML_NAME_PATTERN, description=SENML_NAME_DESCRIPTION
    )
    sc_chip: str | None = Field(None, pattern=SC_CHIP_PATTERN, description=SC_CHIP_DESCRIPTION)
    sc_location: str | None = Field(
        None, pattern=SC_LOCATION_PATTERN, description=SC_LOCATION_DESCRIPTION
    )


class SensorIn(SensorDetails):
    id: str = Field(pattern=SENSOR_ID_PATTERN, description="Also the device's MQTT username")
    type: str = Field(min_length=1, max_length=64, description="A sensor type of the catalogue")
    subdistrict: str = Field(min_length=1, max_length=64)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    status: Status = "planned"


#: Fields of a sensor the registry always has a value for (NOT NULL): a patch may change
#: them, never null them ("" clears a text; a type can only be replaced)
NOT_NULL = ("type", "address", "description", "mounting", "owner_department", "firmware")


#: A patch field left out: None in Python, not a value a client may send (the schema has
#: no null for it; pydantic's documented way to keep a default out of the JSON schema)
Absent = SkipJsonSchema[None]


class SensorPatch(BaseModel):
    """A partial update; only the fields given change. Location has its own ``move``.
    ``null`` clears the gateway and the dates; the other fields refuse it (422, saying
    why) rather than reach the database's NOT NULL constraint."""

    model_config = ConfigDict(extra="forbid")

    type: str | Absent = Field(None, min_length=1, max_length=64)
    gateway_id: str | None = Field(None, max_length=64)
    address: str | Absent = Field(None, max_length=500)
    description: str | Absent = Field(None, max_length=2000)
    mounting: str | Absent = Field(None, max_length=64)
    installed_on: date | None = None
    commissioned_on: date | None = None
    owner_department: str | Absent = Field(None, max_length=128)
    firmware: str | Absent = Field(None, max_length=64)
    dev_eui: str | None = Field(None, max_length=64, description=DEV_EUI_DESCRIPTION)

    _canonical_dev_eui = field_validator("dev_eui", mode="before")(_dev_eui)
    senml_name: str | None = Field(
        None, pattern=SENML_NAME_PATTERN, description=SENML_NAME_DESCRIPTION
    )
    sc_chip: str | None = Field(None, pattern=SC_CHIP_PATTERN, description=SC_CHIP_DESCRIPTION)
    sc_location: str | None = Field(
        None, pattern=SC_LOCATION_PATTERN, description=SC_LOCATION_DESCRIPTION
    )

    @model_validator(mode="before")
    @classmethod
    def _no_null(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in NOT_NULL:
                if name in data and data[name] is None:
                    clear = "leave it out to keep it" if name == "type" else 'send "" to clear it'
                    raise ValueError(f"{name} cannot be null: {clear}")
        return data


class Move(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    subdistrict: str | None = Field(None, min_length=1, max_length=64)
    address: str | None = Field(None, max_length=500)


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status
    note: str = Field("", max_length=500)


class SensorOut(SensorIn):
    model_config = ConfigDict(extra="ignore")

    created_at: datetime | None = None
    updated_at: datetime | None = None
    has_credentials: bool = False


class SensorPage(BaseModel):
    items: list[SensorOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page")


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    before: dict[str, object] | None
    after: dict[str, object] | None


class GatewayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=SENSOR_ID_PATTERN, description="Also the gateway's MQTT username")
    subdistrict: str = Field(min_length=1, max_length=64)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    description: str = Field("", max_length=2000)
    status: Status = "active"


class GatewayOut(GatewayIn):
    model_config = ConfigDict(extra="ignore")

    has_credentials: bool = False
    sensors: list[str] = Field(default_factory=list, description="Sensors attached to it")
