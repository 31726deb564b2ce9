"""Gateways: register, look up, list (with the sensors attached to them), retire.

A gateway publishes packs on its own pack topic; the ingester accepts a pack reading
only for a sensor whose ``gateway_id`` is that gateway."""

from __future__ import annotations

from sqlalchemy import select

from sensornet.registry.models import Gateway, Sensor, utcnow
from sensornet.registry.schemas import GatewayIn, GatewayOut
from sensornet.registry.service import InvalidSensor, Registry, SensorExists, SensorNotFound, audit


class GatewayNotFound(SensorNotFound):
    """No gateway with that id in the registry."""


def _out(row: Gateway, sensors: list[str]) -> GatewayOut:
    return GatewayOut(
        id=row.id,
        subdistrict=row.subdistrict,
        lat=row.lat,
        lon=row.lon,
        description=row.description or "",
        status=row.status,
        has_credentials=row.mqtt_password_hash is not None,
        sensors=sensors,
    )


async def register_gateway(registry: Registry, spec: GatewayIn, actor: str) -> GatewayOut:
    registry.check_new_id(spec.id)
    registry.check(subdistrict=spec.subdistrict, lat=spec.lat, lon=spec.lon)
    if spec.status == "retired":
        raise InvalidSensor(f"gateway {spec.id}: cannot register as retired")
    async with registry.session() as session, session.begin():
        if await session.get(Gateway, spec.id) is not None:
            raise SensorExists(f"gateway {spec.id} is already registered")
        if await session.get(Sensor, spec.id) is not None:
            raise SensorExists(f"{spec.id} is a sensor id; a gateway needs its own MQTT name")
        now = utcnow()
        row = Gateway(**spec.model_dump(), created_at=now, updated_at=now)
        session.add(row)
        out = _out(row, [])
        audit(session, actor, "register", "gateway", spec.id, None, out.model_dump(mode="json"))
        return out


async def get_gateway(registry: Registry, gateway_id: str) -> GatewayOut:
    async with registry.session() as session:
        row = await session.get(Gateway, gateway_id)
        if row is None:
            raise GatewayNotFound(f"no gateway {gateway_id!r} in the registry")
        query = select(Sensor.id).where(Sensor.gateway_id == gateway_id).order_by(Sensor.id)
        return _out(row, [str(i) for i in (await session.scalars(query)).all()])


async def list_gateways(registry: Registry) -> list[GatewayOut]:
    async with registry.session() as session:
        rows = (await session.scalars(select(Gateway).order_by(Gateway.id))).all()
        attached = await session.execute(
            select(Sensor.gateway_id, Sensor.id).where(Sensor.gateway_id.is_not(None))
        )
        by_gateway: dict[str, list[str]] = {}
        for gateway_id, sensor_id in attached.all():
            by_gateway.setdefault(str(gateway_id), []).append(str(sensor_id))
        return [_out(r, sorted(by_gateway.get(r.id, []))) for r in rows]


async def retire_gateway(registry: Registry, gateway_id: str, actor: str) -> GatewayOut:
    async with registry.session() as session, session.begin():
        row = await session.get(Gateway, gateway_id)
        if row is None:
            raise GatewayNotFound(f"no gateway {gateway_id!r} in the registry")
        if row.status != "retired":
            before = _out(row, []).model_dump(mode="json")
            row.status = "retired"
            row.updated_at = utcnow()
            after = _out(row, []).model_dump(mode="json")
            audit(session, actor, "status", "gateway", gateway_id, before, after)
    return await get_gateway(registry, gateway_id)
