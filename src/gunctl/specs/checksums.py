"""Every frame checksum a spec can name, and how each is computed.

The catalogue is one list so that the codec (which checks frames) and the spec
drafter (which searches a capture for the checksum a device uses) can never
disagree on what a name means. Sums and xor are computed here; every CRC is a
preset of the ``crc`` package, except CRC-16/CCITT-FALSE, which is the standard
library's C ``crc_hqx`` because it guards every 25 Hz telemetry frame of the
reference protocol.
"""

from __future__ import annotations

import binascii
import functools
import operator
import zlib
from collections.abc import Callable
from enum import StrEnum

from crc import Calculator, Configuration, Crc8, Crc16


class ChecksumKind(StrEnum):
    SUM8 = "sum8"  # sum of the covered bytes, modulo 256
    SUM8_NEG = "sum8-neg"  # two's complement of that sum: frame + checksum sums to 0
    XOR8 = "xor8"  # xor of the covered bytes
    CRC8 = "crc8"  # CRC-8/SMBUS: poly 0x07, init 0x00 (the crc package's "CCITT")
    CRC8_SAE_J1850 = "crc8-sae-j1850"
    CRC8_SAE_J1850_ZERO = "crc8-sae-j1850-zero"
    CRC8_AUTOSAR = "crc8-autosar"
    CRC8_BLUETOOTH = "crc8-bluetooth"
    CRC8_MAXIM_DOW = "crc8-maxim-dow"
    CRC8_ITU = "crc8-itu"
    CRC8_ROHC = "crc8-rohc"
    CRC16_CCITT = "crc16-ccitt"  # CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF
    CRC16_XMODEM = "crc16-xmodem"
    CRC16_GSM = "crc16-gsm"
    CRC16_PROFIBUS = "crc16-profibus"
    CRC16_MODBUS = "crc16-modbus"
    CRC16_KERMIT = "crc16-kermit"
    CRC16_IBM = "crc16-ibm"  # also known as CRC-16/ARC
    CRC16_MAXIM = "crc16-maxim"
    CRC16_USB = "crc16-usb"
    CRC16_X25 = "crc16-x25"
    CRC16_DNP = "crc16-dnp"
    CRC32 = "crc32"  # the zlib/Ethernet CRC-32

    @property
    def size(self) -> int:
        """Bytes the checksum takes in a frame."""
        if self is ChecksumKind.CRC32:
            return 4
        return 2 if self.value.startswith("crc16") else 1


def _crc(config: Configuration) -> Callable[[bytes], int]:
    calculator = Calculator(config, optimized=True)
    return lambda data: int(calculator.checksum(data))


_PRESETS: dict[ChecksumKind, Configuration] = {
    ChecksumKind.CRC8: Crc8.CCITT.value,
    ChecksumKind.CRC8_SAE_J1850: Crc8.SAEJ1850.value,
    ChecksumKind.CRC8_SAE_J1850_ZERO: Crc8.SAEJ1850_ZERO.value,
    ChecksumKind.CRC8_AUTOSAR: Crc8.AUTOSAR.value,
    ChecksumKind.CRC8_BLUETOOTH: Crc8.BLUETOOTH.value,
    ChecksumKind.CRC8_MAXIM_DOW: Crc8.MAXIM_DOW.value,
    ChecksumKind.CRC8_ITU: Crc8.ITU.value,
    ChecksumKind.CRC8_ROHC: Crc8.ROHC.value,
    ChecksumKind.CRC16_XMODEM: Crc16.XMODEM.value,
    ChecksumKind.CRC16_GSM: Crc16.GSM.value,
    ChecksumKind.CRC16_PROFIBUS: Crc16.PROFIBUS.value,
    ChecksumKind.CRC16_MODBUS: Crc16.MODBUS.value,
    ChecksumKind.CRC16_KERMIT: Crc16.KERMIT.value,
    ChecksumKind.CRC16_IBM: Crc16.IBM.value,
    ChecksumKind.CRC16_MAXIM: Crc16.MAXIM.value,
    ChecksumKind.CRC16_USB: Crc16.USB.value,
    ChecksumKind.CRC16_X25: Crc16.X25.value,
    ChecksumKind.CRC16_DNP: Crc16.DNP.value,
}

_FUNCTIONS: dict[ChecksumKind, Callable[[bytes], int]] = {
    ChecksumKind.SUM8: lambda data: sum(data) & 0xFF,
    ChecksumKind.SUM8_NEG: lambda data: -sum(data) & 0xFF,
    ChecksumKind.XOR8: lambda data: functools.reduce(operator.xor, data, 0),
    ChecksumKind.CRC16_CCITT: lambda data: binascii.crc_hqx(data, 0xFFFF),
    ChecksumKind.CRC32: zlib.crc32,
    **{kind: _crc(config) for kind, config in _PRESETS.items()},
}


def checksum(kind: ChecksumKind, data: bytes) -> int:
    """The checksum of ``data`` as a number; its byte order is the frame's business."""
    return _FUNCTIONS[kind](data)
