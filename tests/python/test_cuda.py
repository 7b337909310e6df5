"""CUDA arrays in qcomm.encode/decode through DLPack. The DLPack checks run everywhere (CPU
tensors); the device round trip against the CPU codec runs where torch sees a CUDA device and
skips with a message elsewhere."""

import numpy as np
import pytest

import qcomm
from qcomm import _cuda, _qcomm

torch = pytest.importorskip("torch")


def test_cpu_arrays_are_not_taken_for_device_arrays():
    assert not _cuda._on_cuda(np.zeros(3, dtype=np.float32))
    assert not _cuda._on_cuda(torch.zeros(3))
    assert not _cuda._on_cuda([1.0, 2.0])


def test_dlpack_capsules_are_read_and_checked():
    assert _qcomm.dlpack_describe(torch.zeros(2, 3).__dlpack__()) == ("cpu", "float32", 6)
    assert _qcomm.dlpack_describe(torch.zeros(4, dtype=torch.int64).__dlpack__()) == (
        "cpu", "int64", 4)
    with pytest.raises(ValueError, match="tensor must be contiguous"):
        _qcomm.dlpack_describe(torch.zeros(4, 4).t().__dlpack__())


@pytest.mark.skipif(not _qcomm.built_with_cuda, reason="qcomm built without CUDA")
def test_the_cuda_entry_points_refuse_host_memory_by_name():
    x = torch.zeros(1000)
    scales = torch.zeros(2)
    words = torch.zeros(200, dtype=torch.int64)
    ws = torch.zeros(0, dtype=torch.uint8)
    with pytest.raises(ValueError, match="values must be on a CUDA device, got cpu"):
        _qcomm.cuda_encode(x.__dlpack__(), scales.__dlpack__(), words.__dlpack__(),
                           ws.__dlpack__(), 4, 512, "max", "compact", 16, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="out must be on a CUDA device, got cpu"):
        _qcomm.cuda_decode(scales.__dlpack__(), words.__dlpack__(), x.__dlpack__(), 4, 512,
                           "max", "compact", 0)
    with pytest.raises(ValueError, match="bits"):
        _qcomm.cuda_workspace_bytes(1000, 17, 512, "max", "compact")


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(),
                               reason="no CUDA device visible to torch: the device round trip "
                                      "runs on GPU machines")


@needs_gpu
@pytest.mark.parametrize("random_bits", [16, 32])
@pytest.mark.parametrize("bits,bucket,norm,layout", [(4, 512, "max", "compact"),
                                                     (2, 7, "l2", "seed"),
                                                     (8, None, "l2", "compact"),
                                                     (3, 5000, "max", "seed")])
def test_device_words_equal_the_cpu_words(bits, bucket, norm, layout, random_bits):
    x = torch.randn(3, 33333, generator=torch.Generator().manual_seed(1))
    cpu = qcomm.encode(x.numpy(), bits, seed=5, bucket_size=bucket, norm=norm, layout=layout,
                       rank=1, tensor_id=2, step=3, random_bits=random_bits)
    gpu = qcomm.encode(x.cuda(), bits, seed=5, bucket_size=bucket, norm=norm, layout=layout,
                       rank=1, tensor_id=2, step=3, random_bits=random_bits)
    assert gpu["neo"].is_cuda and gpu["norm"].is_cuda
    assert gpu["random_bits"] == cpu["random_bits"] == random_bits
    # The same message, flags included: to_bytes copies the device code to the host.
    assert qcomm.to_bytes(gpu) == qcomm.to_bytes(cpu)
    assert np.array_equal(gpu["neo"].cpu().numpy().view(np.uint64), cpu["neo"])
    assert np.array_equal(np.atleast_1d(gpu["norm"].cpu().numpy()),
                          np.atleast_1d(np.float32(cpu["norm"])))
    decoded = qcomm.decode(gpu)
    assert decoded.is_cuda and tuple(decoded.shape) == (3, 33333)
    assert np.array_equal(decoded.cpu().numpy(), qcomm.decode(cpu))
    # The host path reads a device code too (to_bytes copies it).
    assert np.array_equal(qcomm.decode(qcomm.from_bytes(qcomm.to_bytes(gpu))), qcomm.decode(cpu))
