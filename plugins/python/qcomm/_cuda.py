"""CUDA arrays in qcomm.encode / qcomm.decode, through DLPack.

A torch or cupy CUDA tensor is encoded on its device by qcomm's CUDA codec, on the library's
current stream, into the same code dict as on the CPU except that ``neo`` (the words) and ``norm``
(the per-bucket float32 scales, always an array here) are device arrays of the input's library:
the words never leave the device. Words are int64 in torch (which has no uint64), uint64 in cupy,
with the same bits. ``qcomm.decode`` of such a dict decodes on the device; ``qcomm.to_bytes`` copies
it to the host. Same input, key and options give the same words as the CPU codec.
"""

import math

import numpy as np

from . import _qcomm

_KDL_CUDA = (2, 13)  # kDLCUDA, kDLCUDAManaged


def _on_cuda(x):
    device = getattr(x, "__dlpack_device__", None)
    return device is not None and not isinstance(x, np.ndarray) and device()[0] in _KDL_CUDA


def _library(x):
    module = type(x).__module__.split(".")[0]
    if module not in ("torch", "cupy"):
        raise TypeError(f"CUDA arrays are taken from torch or cupy, got a {type(x).__name__} "
                        f"from {module}")
    return module


def _empty(like, count, kind):
    """A device array on like's device: kind 'float32', 'words' or 'bytes'."""
    if _library(like) == "torch":
        import torch
        dtype = {"float32": torch.float32, "words": torch.int64, "bytes": torch.uint8}[kind]
        return torch.empty(count, dtype=dtype, device=like.device)
    import cupy
    dtype = {"float32": cupy.float32, "words": cupy.uint64, "bytes": cupy.uint8}[kind]
    with like.device:
        return cupy.empty(count, dtype=dtype)


def _stream(like):
    if _library(like) == "torch":
        import torch
        return torch.cuda.current_stream(like.device).cuda_stream
    import cupy
    return cupy.cuda.get_current_stream().ptr


def _host_array(x):
    """A numpy view or copy of x (device arrays are copied to the host)."""
    if not _on_cuda(x):
        return np.asarray(x)
    if _library(x) == "torch":
        host = x.detach().cpu().numpy()
        return host.view(np.uint64) if host.dtype == np.int64 else host
    return x.get()


def _encode_cuda(x, quantization_level, seed, bucket_size, norm, layout, rank, tensor_id, step,
                 random_bits):
    from ._codec import _encode_args

    if not _qcomm.built_with_cuda:
        raise RuntimeError("qcomm was built without CUDA (no nvcc at build time), so it cannot "
                           "encode a CUDA tensor; copy it to the host first")
    if _library(x) == "torch":
        x = x.detach().contiguous()
    elif not x.flags.c_contiguous:
        x = x.copy(order="C")
    described = _qcomm.dlpack_describe(x.__dlpack__())
    if described[1] != "float32":
        raise TypeError(f"encode of a CUDA tensor expects float32 values, got {described[1]}")
    bits, bucket, seed, rank, tensor_id, step = _encode_args(
        quantization_level, seed, bucket_size, norm, layout, rank, tensor_id, step)
    shape = tuple(int(d) for d in x.shape)
    count = math.prod(shape)
    k, bucket_eff, buckets, word_count = _qcomm.geometry(count, bits, layout, bucket)
    scales = _empty(x, buckets, "float32")
    words = _empty(x, word_count, "words")
    workspace = _empty(x, _qcomm.cuda_workspace_bytes(count, bits, bucket, norm, layout), "bytes")
    _qcomm.cuda_encode(x.__dlpack__(), scales.__dlpack__(), words.__dlpack__(),
                       workspace.__dlpack__(), bits, bucket, norm, layout, random_bits, seed,
                       rank, tensor_id, step, _stream(x))
    return {
        "neo": words,
        "norm": scales,
        "quantization_level": bits,
        "len_each_section": -(-min(bucket_eff, count) // k) if count else 0,
        "num_int_each_64_bits": k,
        "shape": shape,
        "layout": layout,
        "norm_kind": norm,
        "bucket_size": bucket_eff,
        "dtype": "float32",
        "random_bits": random_bits,
    }


def _decode_cuda(code, dtype):
    from ._codec import _LAYOUTS, _NORMS, _choice

    if not _qcomm.built_with_cuda:
        raise RuntimeError("qcomm was built without CUDA, so it cannot decode device words")
    if dtype is not None and np.dtype(dtype) != np.float32:
        raise ValueError(f"a device code decodes to float32, not {np.dtype(dtype).name}")
    words, scales = code["neo"], code["norm"]
    if not _on_cuda(scales):
        raise ValueError("code['norm'] must be on the same CUDA device as code['neo']")
    shape = tuple(int(d) for d in code["shape"])
    layout = _choice("code['layout']", code.get("layout", "seed"), _LAYOUTS)
    norm = _choice("code['norm_kind']", code.get("norm_kind", "l2"), _NORMS)
    out = _empty(words, math.prod(shape), "float32")
    _qcomm.cuda_decode(scales.__dlpack__(), words.__dlpack__(), out.__dlpack__(),
                       int(code["quantization_level"]), int(code.get("bucket_size") or 0), norm,
                       layout, _stream(words))
    return out.reshape(shape)
