#!/usr/bin/env python3
"""Writes tests/fixtures/half.safetensors: F16 and BF16 tensors with the float32 values they stand
for, computed here independently of bwt (tests/test_safetensors.c checks bwt's conversions against
them).

F16 values come from Python's own IEEE half-precision decoder (struct format 'e'), BF16 values from
the definition (the 16 bits are the top half of a float32). Entries:

  f16          F16 [N]   every 251st bit pattern, and the edge cases: +-0, the smallest and largest
                         subnormals, the smallest normal, 1, the largest finite value, +-infinity
  f16.as_f32   F32 [N]   their values (NaN patterns are left out: Python does not keep a payload)
  bf16         BF16 [M]  every 509th bit pattern that is not a NaN, and edge cases
  bf16.as_f32  F32 [M]   their values
  f32          F32 [3]   1.5, -2, 3.25: a plain F32 tensor

The header is padded so that the tensor data starts at an odd byte of the file: every tensor is
misaligned for its dtype, as files from other writers may place them, and bwt must copy rather than
hand out a misaligned pointer. No __metadata__, so no checksum (as in other tools' files).

Run with Debian's interpreter (only the standard library is needed):
    /usr/bin/python3 tools/make_half_fixture.py
"""
import json
import math
import os
import struct

EDGE_F16 = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x3555, 0x7BFF, 0xFBFF,
            0x7C00, 0xFC00]
EDGE_BF16 = [0x0000, 0x8000, 0x0001, 0x007F, 0x0080, 0x3F80, 0x4049, 0xC2F7, 0x7F7F, 0x7F80, 0xFF80]


def f16_value(h):
    return struct.unpack("<e", struct.pack("<H", h))[0]


def bf16_value(h):
    return struct.unpack("<f", struct.pack("<I", h << 16))[0]


def main():
    f16 = EDGE_F16 + [h for h in range(0, 65536, 251) if h not in EDGE_F16 and not math.isnan(f16_value(h))]
    bf16 = EDGE_BF16 + [h for h in range(0, 65536, 509) if h not in EDGE_BF16 and not math.isnan(bf16_value(h))]
    tensors = [
        ("f16", "F16", struct.pack("<%dH" % len(f16), *f16)),
        ("f16.as_f32", "F32", struct.pack("<%df" % len(f16), *[f16_value(h) for h in f16])),
        ("bf16", "BF16", struct.pack("<%dH" % len(bf16), *bf16)),
        ("bf16.as_f32", "F32", struct.pack("<%df" % len(bf16), *[bf16_value(h) for h in bf16])),
        ("f32", "F32", struct.pack("<3f", 1.5, -2.0, 3.25)),
    ]
    header, data = {}, b""
    for name, dtype, raw in tensors:
        size = 2 if dtype in ("F16", "BF16") else 4
        header[name] = {"dtype": dtype, "shape": [len(raw) // size], "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    while (8 + len(text)) % 2 == 0:  # the data starts at an odd offset: misaligned for every dtype
        text += b" "
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "half.safetensors")
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    print("wrote %s: %d F16, %d BF16 values, %d bytes" % (os.path.normpath(out), len(f16), len(bf16), 8 + len(text) + len(data)))


if __name__ == "__main__":
    main()
