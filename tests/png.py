"""Just enough PNG decoding to look at a browser screenshot's pixels (no image library).

Reads 8-bit RGB or RGBA, non-interlaced images: what Chromium's screenshots are.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter

RGB = tuple[int, int, int]


def pixels(png: bytes) -> tuple[int, int, list[RGB]]:
    """(width, height, the pixels row by row as RGB, alpha dropped)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, bytearray(), b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            idat += data
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    channels = 4 if color == 6 else 3
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = row[i - channels] if i >= channels else 0
            up = previous[i]
            upper_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - upper_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else upper_left)
                row[i] = (row[i] + predictor) & 0xFF
        rows.append(row)
        previous = row
    out = [(row[x * channels], row[x * channels + 1], row[x * channels + 2]) for row in rows for x in range(width)]
    return width, height, out


def hex_rgb(color: str) -> RGB:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def count_near(colors: Counter[RGB], color: str, tolerance: int = 24) -> int:
    """How many pixels are within ``tolerance`` (per channel) of ``color`` (``#rrggbb``)."""
    want = hex_rgb(color)
    return sum(n for rgb, n in colors.items() if all(abs(a - b) <= tolerance for a, b in zip(rgb, want, strict=True)))


def colors_of(png: bytes) -> Counter[RGB]:
    return Counter(pixels(png)[2])
