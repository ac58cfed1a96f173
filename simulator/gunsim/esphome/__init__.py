"""A fake ESPHome Bluetooth proxy: simulated guns behind the ESPHome native API.

``gunsim.esphome.proxy.FakeProxy`` serves aioesphomeapi's own protobuf messages
over TCP, plaintext or Noise-encrypted (``gunsim.esphome.wire``), so
``bleak-esphome`` and ``habluetooth`` reach the simulated guns exactly as they
reach guns behind a real ESP32 proxy. ``gunsim proxy`` (``gunsim.esphome.cli``)
runs one from the shell. Nothing is imported here, so that ``gunsim``'s other
commands do not load the ESPHome stack.
"""
