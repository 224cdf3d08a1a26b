"""Minimal safetensors reader/writer (no `safetensors` package needed).

Layout written: 8-byte little-endian header length N, then N bytes of compact JSON
(`__metadata__` first, then tensors sorted by name, which is the order the
safetensors library uses), padded with spaces to a multiple of 8, then the raw
little-endian tensor bytes in header order with no gaps.
"""
import json
import os
import struct
import tempfile

import numpy as np

_DTYPES = {np.dtype("float32"): "F32", np.dtype("int32"): "I32"}
_NP = {"F32": np.float32, "I32": np.int32, "F64": np.float64, "I64": np.int64,
       "F16": np.float16}


def write_atomic(path, data):
    """Write bytes to path through a temp file + rename, so nothing half-written remains."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp.", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def encode(tensors, metadata=None):
    """tensors: {name: np.ndarray (float32 or int32)} -> safetensors bytes."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if a.dtype not in _DTYPES:
            raise TypeError(f"{name}: dtype {a.dtype} not supported (F32/I32 only)")
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _DTYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((-len(hb)) % 8)
    return struct.pack("<Q", len(hb)) + hb + b"".join(blobs)


def save(path, tensors, metadata=None):
    write_atomic(path, encode(tensors, metadata))


def load(path):
    """-> ({name: np.ndarray}, metadata dict). Checks that the offsets stay in bounds."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} past end of file ({len(data)} bytes)")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        dt = np.dtype(_NP[h["dtype"]]).newbyteorder("<")
        count = int(np.prod(h["shape"], dtype=np.int64))
        if not (0 <= a <= b <= len(body)) or b - a != count * dt.itemsize:
            raise ValueError(f"{path}: tensor '{name}': offsets {a}..{b} do not fit shape {h['shape']}")
        out[name] = np.frombuffer(body[a:b], dtype=dt).reshape(h["shape"]).astype(dt.newbyteorder("="))
    return out, meta
