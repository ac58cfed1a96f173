"""A fake ESPHome Bluetooth proxy: simulated guns behind the ESPHome native API.

``FakeProxy`` serves aioesphomeapi's own protobuf messages over TCP, plaintext
or Noise-encrypted, so ``bleak-esphome`` and ``habluetooth`` reach the
simulated guns exactly as they reach guns behind a real ESP32 proxy.
"""

from gunsim.esphome.proxy import API_PORT, FakeProxy, ProxiedGun, ProxyCounters

__all__ = ["API_PORT", "FakeProxy", "ProxiedGun", "ProxyCounters"]
