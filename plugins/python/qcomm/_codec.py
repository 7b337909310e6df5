"""Seed-compatible QSGD encode/decode over qcomm's C++ codec.

A code is the seed notebook's dict: ``neo`` (numpy uint64 words), ``norm``, ``quantization_level``,
``len_each_section``, ``num_int_each_64_bits`` and ``shape``. qcomm adds ``layout``, ``norm_kind``,
``bucket_size``, ``dtype`` and ``nonfinite``; with several buckets ``norm`` is an array of
per-bucket scales. ``decode`` reads dicts made by the seed's own ``encode`` too (they lack the extra
keys: seed layout, one bucket, float64).
"""

import math
import numbers
import secrets
import threading
from collections.abc import Mapping

import numpy as np

from . import _qcomm
from ._cuda import _decode_cuda, _encode_cuda, _host_array, _on_cuda

_LAYOUTS = ("seed", "compact")
_NORMS = ("l2", "max")
_FLAG_NONFINITE = 1
_FLAG_RANDOM16 = 1 << 2

_executor_lock = threading.Lock()
_executor = None


def _shared_executor():
    """One thread pool per process, sized by QCOMM_NUM_THREADS (default: all cores)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = _qcomm.Executor(0)
        return _executor


def _int_arg(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _encode_args(quantization_level, seed, bucket_size, norm, layout, rank, tensor_id, step):
    """Checks encode's arguments (host and device alike); returns (bits, bucket, seed, rank,
    tensor_id, step), bucket 0 for one bucket and a fresh seed for None."""
    bits = _int_arg("quantization_level", quantization_level, 1, 16)
    bucket = 0 if bucket_size is None else _int_arg("bucket_size", bucket_size, 1, 1 << 56)
    seed = secrets.randbits(64) if seed is None else _int_arg("seed", seed, 0, (1 << 64) - 1)
    rank = _int_arg("rank", rank, 0, (1 << 32) - 1)
    tensor_id = _int_arg("tensor_id", tensor_id, 0, (1 << 32) - 1)
    step = _int_arg("step", step, 0, (1 << 64) - 1)
    _choice("norm", norm, _NORMS)
    _choice("layout", layout, _LAYOUTS)
    return bits, bucket, seed, rank, tensor_id, step


def _as_array(x):
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, as the seed accepted
        return x.detach().cpu().numpy()
    raise TypeError(f"encode expects a numpy array or torch tensor, got {type(x).__name__}")


def encode(x, quantization_level=4, seed=None, bucket_size=None, norm="l2", layout="seed", *,
           rank=0, tensor_id=0, step=0, random_bits=16, out=None):
    """QSGD-encodes a float32 or float64 array of any shape.

    quantization_level: q, 1..16 bits per magnitude (s = 2^q - 1 levels).
    seed: seeds the stochastic rounding; None draws a fresh one. With rank, tensor_id and step it
        keys a Philox generator, so the same arguments give the same words on any machine.
    bucket_size: values per bucket (each with its own norm); None is the whole tensor.
    norm: 'l2' (the paper's and the seed's) or 'max' (lower variance).
    layout: 'seed' (2-bit sign, bit-compatible with the seed notebook) or 'compact' (1-bit sign).
    random_bits: 16 (the default: half the Philox work, bias at most 2^-16 of a step,
        docs/format.md) or 32 (unbiased to 2^-24 of a step; qcomm's draws before 2026-12-04).
    out: an earlier code of this function with the same geometry (values, bits, layout, bucket,
        dtype): its buffers are reused, no allocation, and that dict is returned holding the new
        code.
    """
    if isinstance(random_bits, bool) or random_bits not in (16, 32):
        raise ValueError(f"random_bits must be 32 or 16, got {random_bits!r}")
    if _on_cuda(x):
        if out is not None:
            raise ValueError("out= is for CPU arrays; a CUDA encode allocates on the device")
        return _encode_cuda(x, quantization_level, seed, bucket_size, norm, layout, rank,
                            tensor_id, step, random_bits)
    array = _as_array(x)
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"encode expects float32 or float64 values, got {array.dtype} "
            f"(convert with .astype(np.float32))")
    bits, bucket, seed, rank, tensor_id, step = _encode_args(
        quantization_level, seed, bucket_size, norm, layout, rank, tensor_id, step)
    if not array.flags.c_contiguous:  # (np.ascontiguousarray would turn a 0-d array into 1-d)
        array = array.copy(order="C")
    if out is not None and not (isinstance(out, dict) and isinstance(out.get("neo"), np.ndarray)):
        raise TypeError(f"encode: out must be a code dict from qcomm.encode, got "
                        f"{type(out).__name__}")
    coder = _qcomm.encode_f32 if array.dtype == np.float32 else _qcomm.encode_f64
    fields = coder(array, bits, bucket, norm, layout, random_bits, seed, rank, tensor_id, step,
                   _shared_executor(), None if out is None else out["neo"])
    if out is None:
        return _to_code(fields)
    out.clear()  # the same buffers, now the new code: every key, not just the words
    out.update(_to_code(fields))
    return out


def _to_code(f):
    k, bucket, buckets, _ = _qcomm.geometry(f["count"], f["bits"], f["layout"], f["bucket_size"])
    scales = f["scales"]
    if buckets == 1:
        norm = float(scales[0])
    else:
        norm = scales.astype(np.float32 if f["dtype"] == "float32" else np.float64)
    return {
        "neo": f["words"],
        "norm": norm,
        "quantization_level": f["bits"],
        "len_each_section": -(-min(bucket, f["count"]) // k),
        "num_int_each_64_bits": k,
        "shape": tuple(f["shape"]),
        "layout": f["layout"],
        "norm_kind": f["norm"],
        "bucket_size": bucket,
        "dtype": f["dtype"],
        "nonfinite": bool(f["flags"] & _FLAG_NONFINITE),
        "random_bits": 16 if f["flags"] & _FLAG_RANDOM16 else 32,
    }


def _integral(code, key):
    value = code[key]
    if isinstance(value, float) and value.is_integer():  # the seed notebook's Python 2 floats
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"code[{key!r}] must be an integer, got {type(value).__name__}")
    return int(value)


def _fields(code):
    """Checks a code dict and returns the C++ codec's fields."""
    if not isinstance(code, Mapping):
        raise TypeError(f"decode expects a code dict, got {type(code).__name__}")
    for key in ("neo", "norm", "quantization_level", "shape"):
        if key not in code:
            raise ValueError(f"code is missing the key {key!r}")
    bits = _integral(code, "quantization_level")
    if not 1 <= bits <= 16:
        raise ValueError(f"code['quantization_level'] must be in [1, 16], got {bits}")
    layout = _choice("code['layout']", code.get("layout", "seed"), _LAYOUTS)
    norm_kind = _choice("code['norm_kind']", code.get("norm_kind", "l2"), _NORMS)
    shape = code["shape"]
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"code['shape'] must be a tuple of non-negative integers, got {shape!r}")
    shape = tuple(int(d) for d in shape)
    count = math.prod(shape)
    words = _host_array(code["neo"])
    if words.ndim != 1 or not (np.issubdtype(words.dtype, np.integer) or words.size == 0):
        raise ValueError(
            f"code['neo'] must be a 1-d array of uint64 words, got {words.dtype} of shape "
            f"{words.shape}")
    scales = np.atleast_1d(np.asarray(_host_array(code["norm"]), dtype=np.float64))
    if scales.ndim != 1:
        raise ValueError("code['norm'] must be a number or a 1-d array of bucket scales")
    dtype = code.get("dtype")
    if dtype is None:  # a dict from the seed notebook: float64 norm and values
        dtype = "float64"
    _choice("code['dtype']", dtype, ("float32", "float64"))
    bucket = code.get("bucket_size")
    bucket = max(count, 1) if bucket is None else _integral(code, "bucket_size")
    if bucket < 1:
        raise ValueError(f"code['bucket_size'] must be >= 1, got {bucket}")
    k, bucket, buckets, word_count = _qcomm.geometry(count, bits, layout, bucket)
    if scales.size != buckets:
        raise ValueError(f"code['norm'] holds {scales.size} scales but {count} values in buckets "
                         f"of {bucket} need {buckets}")
    if "num_int_each_64_bits" in code and _integral(code, "num_int_each_64_bits") != k:
        raise ValueError(f"code['num_int_each_64_bits'] is {code['num_int_each_64_bits']} but "
                         f"{bits} bits in the {layout} layout pack {k} values per word")
    section = -(-min(bucket, max(count, 1)) // k) if count else 0
    if "len_each_section" in code and count and _integral(code, "len_each_section") != section:
        raise ValueError(f"code['len_each_section'] is {code['len_each_section']} but {count} "
                         f"values need sections of {section} words")
    if words.size != word_count:
        raise ValueError(f"code['neo'] holds {words.size} words but {count} values at {bits} bits "
                         f"({layout} layout, buckets of {bucket}) need {word_count}")
    flags = _FLAG_NONFINITE if np.isnan(scales).any() else 0
    # A dict without the key is the seed notebook's code or one from before qcomm drew 16 bits by
    # default; the flag only names the draws, decoding does not depend on it.
    random_bits = code.get("random_bits", 32)
    if random_bits not in (16, 32):
        raise ValueError(f"code['random_bits'] must be 32 or 16, got {random_bits!r}")
    if random_bits == 16:
        flags |= _FLAG_RANDOM16
    return (words.astype(np.uint64, copy=False), scales, bits, layout, norm_kind, dtype, bucket,
            count, list(shape), flags)


def decode(code, dtype=None, out=None):
    """Decodes a code dict (from qcomm.encode, qcomm.from_bytes or the seed notebook's encode).

    Returns an array of the code's shape, float32 or float64 like the encoded tensor (float64 for
    the seed notebook's codes), or `dtype` if given. out: a writable C-contiguous float32 or
    float64 array of as many values, written in place and returned in the code's shape (its
    dtype is the output's).
    """
    if isinstance(code, Mapping) and _on_cuda(code.get("neo")):
        if out is not None:
            raise ValueError("out= is for CPU codes")
        return _decode_cuda(code, dtype)
    fields = _fields(code)
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"decode: out must be a numpy array, got {type(out).__name__}")
        if dtype is not None and np.dtype(dtype) != out.dtype:
            raise ValueError(f"decode: dtype={np.dtype(dtype).name} but out is {out.dtype}")
        dtype = out.dtype
    name = _choice("dtype", np.dtype(dtype).name if dtype is not None else fields[5],
                   ("float32", "float64"))
    return _qcomm.decode(*fields, name, _shared_executor(), out).reshape(fields[8])


def to_bytes(code, crc=True):
    """The wire message of a code (header, per-bucket scales, words), as bytes."""
    return _qcomm.to_wire(*_fields(code), bool(crc))


def from_bytes(message):
    """Parses and validates a wire message; returns the code dict. Raises ValueError naming the
    field that is wrong for a malformed message."""
    if not isinstance(message, (bytes, bytearray, memoryview)):
        raise TypeError(f"from_bytes expects bytes, got {type(message).__name__}")
    return _to_code(_qcomm.from_wire(memoryview(message).cast("B")))
