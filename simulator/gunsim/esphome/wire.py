"""The ESPHome native API's framing, as the proxy (the server) speaks it.

aioesphomeapi ships the client side of both transports and the message
definitions (``api_pb2``), but no server; the few lines that frame messages on
the proxy's side are here, and everything inside a frame is aioesphomeapi's own
protobuf. Two transports, one interface (``Channel``):

- plaintext: ``0x00``, varint length, varint message type, the message;
- Noise (``Noise_NNpsk0_25519_ChaChaPoly_SHA256``, with the ``noise`` library
  aioesphomeapi itself uses): every frame is ``0x01`` and a 16-bit length. The
  client opens with an empty frame and its handshake frame; the proxy answers
  with its hello (protocol 1, its name, its MAC as 12 hex digits) and its half of the handshake.
  After that each frame is one encrypted message: 16-bit type, 16-bit length,
  the message. A wrong key is refused with "Handshake MAC failure", which the
  client reports as an invalid encryption key.

A client speaking the wrong transport is told so in the transport it expects,
as ESPHome does, so that aioesphomeapi names the mismatch instead of timing out.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Protocol

from aioesphomeapi.core import MESSAGE_TYPE_TO_PROTO
from aioesphomeapi.noise import decode_noise_psk
from google.protobuf.message import Message
from noise.connection import NoiseConnection

PROTO_TO_MESSAGE_TYPE: dict[type[Message], int] = {v: k for k, v in MESSAGE_TYPE_TO_PROTO.items()}

NOISE_PROTOCOL = b"Noise_NNpsk0_25519_ChaChaPoly_SHA256"
NOISE_PROLOGUE = b"NoiseAPIInit\x00\x00"
MAX_FRAME = 65535


class WireError(Exception):
    """The client sent something that is not the API; the connection is closed."""


class Channel(Protocol):
    """One accepted API connection: decoded messages in, messages out."""

    async def receive(self) -> Message | None:
        """The next message; None for a message type this proxy does not know."""
        ...

    def send(self, message: Message) -> None: ...


def _encode(message: Message) -> tuple[int, bytes]:
    return PROTO_TO_MESSAGE_TYPE[type(message)], message.SerializeToString()


def _decode(msg_type: int, data: bytes) -> Message | None:
    cls = MESSAGE_TYPE_TO_PROTO.get(msg_type)
    if cls is None:
        return None
    message = cls()
    message.ParseFromString(data)
    return message


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


async def _read_varint(reader: asyncio.StreamReader) -> int:
    value = 0
    for shift in range(0, 28, 7):
        byte = (await reader.readexactly(1))[0]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
    raise WireError("varint longer than four bytes")


class PlainChannel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def receive(self) -> Message | None:
        indicator = (await self.reader.readexactly(1))[0]
        if indicator != 0x00:
            # An encrypting client: ESPHome answers with the plaintext marker, so the
            # client can tell that this proxy has no encryption.
            self.writer.write(b"\x00Bad indicator byte")
            raise WireError("the client wants encryption; this proxy has no key")
        length = await _read_varint(self.reader)
        msg_type = await _read_varint(self.reader)
        if length > MAX_FRAME:
            raise WireError(f"a {length}-byte frame")
        return _decode(msg_type, await self.reader.readexactly(length))

    def send(self, message: Message) -> None:
        msg_type, data = _encode(message)
        self.writer.write(b"\x00" + _varint(len(data)) + _varint(msg_type) + data)


def _write_noise_frame(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(b"\x01" + struct.pack(">H", len(payload)) + payload)


async def _read_noise_frame(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(3)
    if header[0] != 0x01:
        raise WireError(f"indicator byte {header[0]:#04x} on an encrypted proxy")
    return await reader.readexactly(struct.unpack(">H", header[1:])[0])


class NoiseChannel:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proto: NoiseConnection
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._proto = proto

    @classmethod
    async def accept(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        psk: str,
        name: str,
        mac: str,
    ) -> NoiseChannel:
        """Run the responder's side of the handshake; raises WireError when it fails."""
        first = await reader.readexactly(1)
        if first != b"\x01":
            # A plaintext client: ESPHome answers in the Noise framing it expects.
            _write_noise_frame(writer, b"\x01Bad indicator byte")
            raise WireError("a plaintext client on an encrypted proxy")
        header = await reader.readexactly(2)
        await reader.readexactly(struct.unpack(">H", header)[0])  # the client's (empty) hello
        handshake = await _read_noise_frame(reader)
        _write_noise_frame(writer, b"\x01" + name.encode() + b"\x00" + mac.encode() + b"\x00")
        proto = NoiseConnection.from_name(NOISE_PROTOCOL)
        proto.set_as_responder()
        proto.set_psks(decode_noise_psk(psk))
        proto.set_prologue(NOISE_PROLOGUE)
        proto.start_handshake()
        try:
            if not handshake or handshake[0] != 0x00:
                raise ValueError("no handshake")
            proto.read_message(handshake[1:])
        except Exception as exc:  # noise raises several types for a wrong key
            _write_noise_frame(writer, b"\x01Handshake MAC failure")
            raise WireError(f"handshake failed: {exc!r}") from exc
        _write_noise_frame(writer, b"\x00" + bytes(proto.write_message()))
        return cls(reader, writer, proto)

    async def receive(self) -> Message | None:
        frame = bytes(self._proto.decrypt(await _read_noise_frame(self.reader)))
        if len(frame) < 4:
            raise WireError("an encrypted frame shorter than its header")
        msg_type, _ = struct.unpack(">HH", frame[:4])
        return _decode(msg_type, frame[4:])

    def send(self, message: Message) -> None:
        msg_type, data = _encode(message)
        frame = bytes(self._proto.encrypt(struct.pack(">HH", msg_type, len(data)) + data))
        _write_noise_frame(self.writer, frame)
