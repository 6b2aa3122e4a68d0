"""What an uploaded banner really is: its type from its first bytes (never the name or the header the
browser sent) and its size from the image header. SVG is refused: it can carry script."""

from __future__ import annotations

import struct

MAX_BYTES = 1024 * 1024


class ImageError(ValueError):
    pass


def sniff(data: bytes) -> tuple[str, int, int]:
    """(content type, width, height) of a PNG, GIF, JPEG or WebP; ImageError for anything else."""
    if len(data) > MAX_BYTES:
        raise ImageError(f"a banner is at most {MAX_BYTES} bytes")
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return _checked("image/png", width, height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return _checked("image/gif", width, height)
    if data.startswith(b"\xff\xd8"):
        return _checked("image/jpeg", *_jpeg_size(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        return _checked("image/webp", *_webp_size(data))
    raise ImageError("not a PNG, GIF, JPEG or WebP image")


def _checked(kind: str, width: int, height: int) -> tuple[str, int, int]:
    if not (1 <= width <= 4096 and 1 <= height <= 4096):
        raise ImageError(f"image size {width}x{height} is outside 1..4096 pixels")
    return kind, width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            raise ImageError("a damaged JPEG")
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    raise ImageError("a JPEG without a frame header")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise ImageError("an unknown WebP layout")
