"""A Gen2+ Shelly announced through the usual script (its Shelly.GetDeviceInfo on
shellies/announce) is heard with the kind its model code or app name describes."""

from __future__ import annotations

import json

import pytest

from core.domain import SensorKind
from ingest.adapters.announce import shelly_announce
from ingest.adapters.common import DeviceAnnounced

# Shelly.GetDeviceInfo as the Gen2 API documents it
# (https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Shelly#shellygetdeviceinfo)
PLUS_PLUG_S = {
    "name": None, "id": "shellyplusplugs-80646fe1d7a4", "mac": "80646FE1D7A4",
    "model": "SNPL-00112EU", "gen": 2, "fw_id": "20230912-082510/1.0.3-g6176478",
    "ver": "1.0.3", "app": "PlusPlugS", "auth_en": False, "auth_domain": None,
}  # fmt: skip


@pytest.mark.parametrize(
    ("model", "app", "kind"),
    [
        ("SNPL-00112EU", "PlusPlugS", SensorKind.POWER),
        ("SNSW-001P16EU", "Plus1PM", SensorKind.POWER),
        ("SNSW-001X16EU", "Plus1", SensorKind.APPLIANCE),
        ("SNSN-0024X", "PlusI4", SensorKind.CONTACT),
        ("SPSW-004PE16EU", "Pro4PM", SensorKind.POWER),
        ("SPSW-001XE16EU", "Pro1", SensorKind.APPLIANCE),
        ("S3PM-001PCEU16", "Mini1PMG3", SensorKind.POWER),
        ("SXXX-NEWCODE", "PlugUKG4", SensorKind.POWER),  # an unknown code: the app decides
        ("SNSN-0013A", "PlusHT", None),  # a thermometer: nothing anbu watches
        ("SHDW-2", None, SensorKind.DOOR),  # Gen1 keeps working
    ],
)
def test_the_model_code_or_app_gives_the_kind(
    model: str, app: str | None, kind: SensorKind | None
) -> None:
    doc = {**PLUS_PLUG_S, "model": model, "app": app}
    [heard] = shelly_announce("g1", json.dumps(doc).encode())
    assert isinstance(heard, DeviceAnnounced)
    assert heard.device == "shellyplusplugs-80646fe1d7a4"
    assert heard.kind == kind and heard.model == model
