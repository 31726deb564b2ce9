"""Gateway endpoints: register (issues its MQTT password once), look up, list, retire."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import Field

from api.auth import Engineer, Viewer
from api.broker_sync import apply, ensure_broker
from api.problems import Problem, concealed
from sensornet import broker_auth
from sensornet.district import load_district
from sensornet.errors import SensornetError
from sensornet.registry import gateways
from sensornet.registry.schemas import GatewayIn, GatewayOut
from sensornet.registry.service import InvalidSensor, Registry, SensorExists, SensorNotFound
from sensornet.reserved import reserved_ids

router = APIRouter(tags=["gateways"])


class RegisteredGateway(GatewayOut):
    mqtt_username: str
    mqtt_password: str = Field(description="Shown once; only its hash is kept")


def _registry(request: Request) -> Registry:
    state = request.app.state
    return Registry(state.registry, state.catalogue, load_district(), reserved_ids(state.settings))


def _problem(exc: SensornetError) -> Problem:
    if isinstance(exc, SensorNotFound):
        return Problem(404, "Unknown gateway", str(exc))
    if isinstance(exc, SensorExists):
        return Problem(409, "Already registered", str(exc))
    if isinstance(exc, InvalidSensor):
        return Problem(422, "Invalid gateway entry", str(exc))
    return concealed(exc)  # not the caller's mistake: logged with an error id


@router.post("/gateways", status_code=201, response_model=RegisteredGateway)
async def register_gateway(request: Request, who: Engineer, spec: GatewayIn) -> RegisteredGateway:
    await ensure_broker(request)
    try:
        out = await gateways.register_gateway(_registry(request), spec, who.actor)
        engine = request.app.state.registry
        issued = await broker_auth.issue_credentials(engine, [spec.id], who.actor)
    except SensornetError as exc:
        raise _problem(exc) from exc
    await apply(request, f"gateway {spec.id} is registered with new credentials (not shown again)")
    body = out.model_dump() | {"has_credentials": True}
    return RegisteredGateway(**body, mqtt_username=spec.id, mqtt_password=issued[spec.id])


@router.get("/gateways", response_model=list[GatewayOut])
async def list_gateways(request: Request, who: Viewer) -> list[GatewayOut]:
    return await gateways.list_gateways(_registry(request))


@router.get("/gateways/{gateway_id}", response_model=GatewayOut)
async def get_gateway(request: Request, who: Viewer, gateway_id: str) -> GatewayOut:
    try:
        return await gateways.get_gateway(_registry(request), gateway_id)
    except SensornetError as exc:
        raise _problem(exc) from exc


@router.post("/gateways/{gateway_id}/retire", response_model=GatewayOut)
async def retire_gateway(request: Request, who: Engineer, gateway_id: str) -> GatewayOut:
    await ensure_broker(request)
    try:
        out = await gateways.retire_gateway(_registry(request), gateway_id, who.actor)
    except SensornetError as exc:
        raise _problem(exc) from exc
    await apply(request, f"gateway {gateway_id} is retired")
    return out
