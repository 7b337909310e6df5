"""qcomm: QSGD gradient compression for allreduce on slow networks.

The codec API replaces the seed notebook's ``encode``/``decode``::

    import numpy as np, qcomm
    code = qcomm.encode(np.random.rand(20, 1), quantization_level=4, seed=0)
    x = qcomm.decode(code)                  # same shape, float64 like the input
    wire = qcomm.to_bytes(code)             # the self-describing wire message
    assert (qcomm.decode(qcomm.from_bytes(wire)) == x).all()

The other quantizers of the notes (linear, percentile, dynamic 8-bit, row-wise, fp16/bf16)::

    q = qcomm.quantize(x, codec="linear", bits=8, mode="asym")   # q.codes, q.scale, q.zero_point
    y = qcomm.dequantize(q)
"""

from ._codec import decode, encode, from_bytes, to_bytes
from ._quantize import (Quantized, dequantize, dynamic_map, quantization_error, quantize,
                        rowwise_matmul)

__version__ = "0.1.0"
__all__ = ["encode", "decode", "to_bytes", "from_bytes", "quantize", "dequantize",
           "quantization_error", "Quantized", "dynamic_map", "rowwise_matmul", "__version__"]
