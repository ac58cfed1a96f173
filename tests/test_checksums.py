"""The checksum catalogue: each name computes the published check value for "123456789"."""

from __future__ import annotations

import pytest

from gunctl.specs.checksums import ChecksumKind, checksum

# Check values from the catalogue of parametrised CRC algorithms (reveng)
CHECK = {
    ChecksumKind.SUM8: 0xDD,
    ChecksumKind.SUM8_NEG: 0x23,
    ChecksumKind.XOR8: 0x31,
    ChecksumKind.CRC8: 0xF4,
    ChecksumKind.CRC8_SAE_J1850: 0x4B,
    ChecksumKind.CRC8_SAE_J1850_ZERO: 0x37,
    ChecksumKind.CRC8_AUTOSAR: 0xDF,
    ChecksumKind.CRC8_BLUETOOTH: 0x26,
    ChecksumKind.CRC8_MAXIM_DOW: 0xA1,
    ChecksumKind.CRC8_ITU: 0xA1,
    ChecksumKind.CRC8_ROHC: 0xD0,
    ChecksumKind.CRC16_CCITT: 0x29B1,
    ChecksumKind.CRC16_XMODEM: 0x31C3,
    ChecksumKind.CRC16_GSM: 0xCE3C,
    ChecksumKind.CRC16_PROFIBUS: 0xA819,
    ChecksumKind.CRC16_MODBUS: 0x4B37,
    ChecksumKind.CRC16_KERMIT: 0x2189,
    ChecksumKind.CRC16_IBM: 0xBB3D,
    ChecksumKind.CRC16_MAXIM: 0x44C2,
    ChecksumKind.CRC16_USB: 0xB4C8,
    ChecksumKind.CRC16_X25: 0x906E,
    ChecksumKind.CRC16_DNP: 0xEA82,
    ChecksumKind.CRC32: 0xCBF43926,
}


def test_every_kind_has_a_check_value() -> None:
    assert set(CHECK) == set(ChecksumKind)


@pytest.mark.parametrize("kind", list(ChecksumKind))
def test_check_value(kind: ChecksumKind) -> None:
    assert checksum(kind, b"123456789") == CHECK[kind]
    assert checksum(kind, b"123456789") < 256**kind.size
