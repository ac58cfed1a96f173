"""The fake ESPHome proxy, as aioesphomeapi's own client sees it (plaintext and Noise)."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator

import pytest
from aioesphomeapi import (
    APIClient,
    BluetoothProxyFeature,
    EncryptionPlaintextAPIError,
    InvalidEncryptionKeyAPIError,
    RequiresEncryptionAPIError,
)
from bluetooth_data_tools import parse_advertisement_data_bytes

from gunctl.clock import Clock
from gunctl.specs.loader import load_specs
from gunsim import SimDevice
from gunsim.esphome.proxy import API_PORT, FakeProxy

pytestmark = pytest.mark.proxy

SPEC = load_specs()["theragun-gen4"]


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
async def gun() -> AsyncIterator[SimDevice]:
    device = SimDevice(SPEC, clock=Clock(), seed=3)
    await device.start()
    yield device
    await device.aclose()


async def connected(proxy: FakeProxy, key: str | None) -> APIClient:
    client = APIClient(proxy.address, API_PORT, None, noise_psk=key)
    await asyncio.wait_for(client.connect(login=True), 5)
    return client


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "noise"])
async def test_a_client_sees_a_bluetooth_proxy_and_hears_its_guns(
    gun: SimDevice, encrypted: bool
) -> None:
    key = new_key() if encrypted else None
    async with FakeProxy("hall", psk=key, slots=4) as proxy:
        heard_gun = proxy.add(gun, rssi=-61)
        client = await connected(proxy, key)
        try:
            info = await client.device_info()
            assert info.name == "hall"
            flags = info.bluetooth_proxy_feature_flags_compat(client.api_version)  # type: ignore[arg-type]
            assert flags & BluetoothProxyFeature.ACTIVE_CONNECTIONS
            assert flags & BluetoothProxyFeature.RAW_ADVERTISEMENTS
            slots: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
            client.subscribe_bluetooth_connections_free(
                lambda free, limit, _: slots.put_nowait((free, limit))
            )
            assert await asyncio.wait_for(slots.get(), 2) == (4, 4)
            adverts: asyncio.Queue[object] = asyncio.Queue()
            client.subscribe_bluetooth_le_raw_advertisements(
                lambda raw: [adverts.put_nowait(a) for a in raw.advertisements]
            )
            advert = await asyncio.wait_for(adverts.get(), 2)
        finally:
            await client.disconnect()
    assert advert.address == int(heard_gun.address.replace(":", ""), 16)  # type: ignore[attr-defined]
    assert abs(advert.rssi - -61) <= 2  # type: ignore[attr-defined]
    parsed = parse_advertisement_data_bytes(advert.data)  # type: ignore[attr-defined]
    assert parsed[0] == heard_gun.name  # local name
    assert SPEC.gatt.service in parsed[1]  # service UUIDs
    assert parsed[3] == heard_gun.manufacturer_data


async def test_a_wrong_key_is_named_as_such() -> None:
    async with FakeProxy("hall", psk=new_key()) as proxy:
        with pytest.raises(InvalidEncryptionKeyAPIError):
            await connected(proxy, new_key())
        assert proxy.counters.rejected_frames == 1


async def test_a_missing_or_unwanted_key_is_named_as_such() -> None:
    async with FakeProxy("hall", psk=new_key()) as proxy:
        with pytest.raises(RequiresEncryptionAPIError):
            await connected(proxy, None)
    async with FakeProxy("hall") as proxy:
        with pytest.raises(EncryptionPlaintextAPIError):
            await connected(proxy, new_key())


async def test_junk_on_the_api_port_is_refused_and_the_proxy_keeps_serving(
    gun: SimDevice,
) -> None:
    async with FakeProxy("hall") as proxy:
        proxy.add(gun)
        for junk in (b"GET / HTTP/1.1\r\n\r\n", b"\x00\xff\xff\xff\xff\xff", os.urandom(4096)):
            reader, writer = await asyncio.open_connection(proxy.address, API_PORT)
            writer.write(junk)
            await writer.drain()
            await asyncio.wait_for(reader.read(), 2)  # the proxy hangs up
            writer.close()
        client = await connected(proxy, None)
        assert (await client.device_info()).name == "hall"
        await client.disconnect()
    assert proxy.counters.rejected_frames >= 2
