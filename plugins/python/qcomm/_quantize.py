"""The block quantizers of the seed notes (001-004) over qcomm's C++ codecs.

    q = qcomm.quantize(x, codec="linear", bits=8, mode="asym", rounding="nearest")
    q.codes, q.scale, q.zero_point      # the notes' view: integer codes, per-block parameters
    y = qcomm.dequantize(q)
    qcomm.quantization_error(x, y, kind="mse")

Codecs: 'linear' and 'percentile' (mode 'sym' or 'asym'), 'dynamic' (8-bit map, per block),
'rowwise' (per row: the last dimension, or the whole tensor with axis=None), 'fp16', 'bf16'.
rounding='nearest' (round half to even, as numpy and torch) reproduces the notes;
rounding='stochastic' is unbiased (what gradients need) and keyed by seed/rank/tensor_id/step like
QSGD. docs/quantizers.md gives every formula and where the notes' code slips.
"""

import numbers
import secrets

import numpy as np

from . import _qcomm
from ._codec import _int_arg, _shared_executor

_CODECS = ("linear", "percentile", "dynamic", "rowwise", "fp16", "bf16")


class Quantized:
    """A quantized tensor: codes (unpacked integers, the input's shape), per-block scale and
    zero_point (a number for one block, an array for several; None where the codec has none)."""

    def __init__(self, fields):
        self._fields = fields

    @property
    def codes(self):
        """The notes' integer codes, unpacked from the words when first asked for."""
        if "codes" not in self._fields:
            fields = dict(self._fields)
            fields["shape"] = (int(np.prod(self.shape)),)
            self._fields["codes"] = _qcomm.unpack_codes(fields)
        return self._fields["codes"].reshape(self.shape)

    def _per_block(self, key):
        values = self._fields[key]
        if values.size == 0:
            return None
        return float(values[0]) if values.size == 1 else values.copy()

    @property
    def scale(self):
        return self._per_block("scales")

    @property
    def zero_point(self):
        return self._per_block("zero_points")

    @property
    def shape(self):
        return tuple(self._fields["shape"])

    @property
    def spec(self):
        """The codec spec (what the Communicator and qcomm.torch take)."""
        return self._fields["spec"]

    @property
    def bits(self):
        return self._fields["bits"]

    @property
    def random_bits(self):
        """Random bits per value of the stochastic rounding (16 or 32; None when rounding to
        nearest, which draws nothing)."""
        spec = self._fields["spec"]
        if "rounding=stochastic" not in spec:
            return None
        return 32 if "random_bits=32" in spec else 16

    @property
    def block_size(self):
        return self._fields["block_size"]

    @property
    def words(self):
        """The packed words (codes of `bits` bits, densely, little-endian bit order)."""
        return self._fields["words"]

    def to_bytes(self, crc=True):
        """The wire message."""
        return _qcomm.quantized_to_wire(self._fields, bool(crc))

    @staticmethod
    def from_bytes(message):
        if not isinstance(message, (bytes, bytearray, memoryview)):
            raise TypeError(f"from_bytes expects bytes, got {type(message).__name__}")
        return Quantized(_qcomm.quantized_from_wire(memoryview(message).cast("B")))

    def __repr__(self):
        return f"Quantized({self.spec}, shape={self.shape})"


def _spec(codec, bits, mode, rounding, block, percentile, random_bits=None):
    if codec not in _CODECS:
        raise ValueError(f"codec must be one of {', '.join(map(repr, _CODECS))}, got {codec!r}")
    if codec in ("fp16", "bf16"):
        if rounding != "nearest":
            raise ValueError(f"{codec} rounds to nearest only")
        return codec
    parts = [f"rounding={rounding}"]
    if bits is not None:
        parts.append(f"bits={bits}")
    if block is not None:
        if isinstance(block, bool) or not isinstance(block, numbers.Integral) or block < 1:
            raise ValueError(f"block must be a positive integer, got {block!r}")
        parts.append(f"block={int(block)}")
    if codec in ("linear", "percentile"):
        if mode not in ("sym", "asym"):
            raise ValueError(f"mode must be 'sym' or 'asym', got {mode!r}")
        parts.append(f"mode={mode}")
    if codec == "percentile":
        parts.append(f"p={float(percentile)!r}")
    if random_bits is not None:
        if isinstance(random_bits, bool) or random_bits not in (16, 32):
            raise ValueError(f"random_bits must be 32 or 16, got {random_bits!r}")
        if rounding != "stochastic":
            raise ValueError(f"random_bits={random_bits} applies to rounding='stochastic'")
        parts.append(f"random_bits={random_bits}")
    return codec + ":" + ",".join(parts)


def quantize(x, codec="linear", bits=None, mode="sym", rounding="nearest", block=None,
             percentile=99.9, axis=-1, seed=None, rank=0, tensor_id=0, step=0, out=None,
             random_bits=None):
    """Quantizes a float32 or float64 array (or CPU torch tensor).

    bits: 2..8 (default 8; dynamic is 8, casts 16). block: values per block (default: the whole
    tensor; dynamic 4096). rowwise: one block per row of the last dimension; axis=None treats the
    whole tensor as one row (note 004's layer-wise example). out: an earlier result of the same
    codec, shape and dtype: its buffers are reused (no allocation) and it then holds the new code.
    random_bits: with rounding='stochastic', 16 (the default: half the Philox work, a bias of at
    most 2^-16 of a step) or 32 random bits per value (unbiased to 2^-24 of a step; the default
    before 2026-12-04); the spec and the message carry it. Rounding to nearest draws nothing.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    array = np.asarray(x)
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(f"quantize expects float32 or float64 values, got {array.dtype}")
    if rounding not in ("nearest", "stochastic"):
        raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
    if codec in ("fp16", "bf16") and random_bits is not None:
        raise ValueError(f"{codec} rounds to nearest only (random_bits does not apply)")
    spec = _spec(codec, bits, mode, rounding, block, percentile, random_bits)
    array = np.ascontiguousarray(array)
    shape = list(array.shape)
    if codec == "rowwise":
        if axis is None:
            shape = [1, array.size]
        elif axis not in (-1, array.ndim - 1):
            raise ValueError("rowwise quantizes along the last axis (axis=-1) or the whole "
                             f"tensor (axis=None), got axis={axis!r}")
    seed = secrets.randbits(64) if seed is None else _int_arg("seed", seed, 0, (1 << 64) - 1)
    rank = _int_arg("rank", rank, 0, (1 << 32) - 1)
    tensor_id = _int_arg("tensor_id", tensor_id, 0, (1 << 32) - 1)
    step = _int_arg("step", step, 0, (1 << 64) - 1)
    if out is not None and not isinstance(out, Quantized):
        raise TypeError(f"quantize: out must be a qcomm.Quantized, got {type(out).__name__}")
    coder = _qcomm.quantize_f32 if array.dtype == np.float32 else _qcomm.quantize_f64
    fields = coder(array.reshape(-1), spec, shape, seed, rank, tensor_id, step,
                   _shared_executor(), None if out is None else out._fields["words"])
    fields["shape"] = tuple(array.shape)
    if out is None:
        return Quantized(fields)
    out._fields = fields  # the same buffers, now the new code
    return out


def dequantize(q, out=None):
    """The values a Quantized stands for, in its shape and dtype (float32 or float64).

    out: a writable C-contiguous float32 or float64 array of as many values, written in place and
    returned in q's shape (its dtype is the output's).
    """
    if not isinstance(q, Quantized):
        raise TypeError(f"dequantize expects a qcomm.Quantized, got {type(q).__name__}")
    fields = dict(q._fields)
    fields["shape"] = (int(np.prod(q.shape)),)
    if out is not None and not isinstance(out, np.ndarray):
        raise TypeError(f"dequantize: out must be a numpy array, got {type(out).__name__}")
    dtype = out.dtype.name if out is not None else fields["dtype"]
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dequantize: out must be float32 or float64, got {dtype}")
    return _qcomm.dequantize(fields, dtype, _shared_executor(), out).reshape(q.shape)


def quantization_error(x, y, kind="mse"):
    """'mse' (mean squared), 'sse' (sum of squares) or 'mae' (mean absolute) of x - y, in
    float64."""
    diff = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    if kind == "mse":
        return float(np.mean(diff ** 2))
    if kind == "sse":
        return float(np.sum(diff ** 2))
    if kind == "mae":
        return float(np.mean(np.abs(diff)))
    raise ValueError(f"kind must be 'mse', 'sse' or 'mae', got {kind!r}")


def dynamic_map():
    """The 256 sorted values of the signed dynamic map (float32)."""
    return _qcomm.dynamic_map()


def rowwise_matmul(a, b_t):
    """a @ b from row-wise codes, in integers: a quantized per row, b_t = b's transpose quantized
    per row (b per column). With a ~ s_i q_ij + m_i and b ~ t_k r_jk + n_k, sum over j of a_ij
    b_jk = s_i t_k (q r)_ik + s_i n_k sum_j q_ij + m_i t_k sum_j r_jk + K m_i n_k; the q r
    product is exact int64."""
    if not (isinstance(a, Quantized) and isinstance(b_t, Quantized)):
        raise TypeError("rowwise_matmul expects two qcomm.Quantized")
    if a._fields["codec"] != "rowwise" or b_t._fields["codec"] != "rowwise":
        raise ValueError("rowwise_matmul needs rowwise codes")
    if len(a.shape) != 2 or len(b_t.shape) != 2 or a.shape[1] != b_t.shape[1]:
        raise ValueError(f"shapes {a.shape} and (transposed) {b_t.shape} do not multiply")
    q = a.codes.astype(np.int64)
    r = b_t.codes.astype(np.int64)
    s = np.asarray(a._fields["scales"])[:, None]
    m = np.asarray(a._fields["zero_points"])[:, None]
    t = np.asarray(b_t._fields["scales"])[None, :]
    n = np.asarray(b_t._fields["zero_points"])[None, :]
    k = a.shape[1]
    return (s * t * (q @ r.T) + s * n * q.sum(1, keepdims=True) +
            m * t * r.sum(1)[None, :] + k * m * n)
