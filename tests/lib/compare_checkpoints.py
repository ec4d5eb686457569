"""Compares the tensors of two safetensors files (Python's standard library only): prints the
largest |a - b| over every F32 tensor relative to the largest |a|, and exits 1 when it exceeds the
tolerance given, or when the files hold different tensors.
Usage: compare_checkpoints.py A B TOLERANCE"""
import json
import struct
import sys
from array import array


def tensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        a = array("f")
        a.frombytes(body[t["data_offsets"][0] : t["data_offsets"][1]])
        if sys.byteorder != "little":
            a.byteswap()
        out[name] = a
    return out


a, b, tol = tensors(sys.argv[1]), tensors(sys.argv[2]), float(sys.argv[3])
if a.keys() != b.keys():
    sys.exit(f"different tensors: {sorted(a.keys() ^ b.keys())}")
diff = max(max(abs(x - y) for x, y in zip(a[k], b[k])) for k in a)
scale = max(max(abs(x) for x in a[k]) for k in a)
print(f"largest difference {diff / scale:.3g} of the largest weight (tolerance {tol:g})")
sys.exit(0 if diff / scale <= tol else 1)
