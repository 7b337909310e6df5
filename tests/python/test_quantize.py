"""qcomm.quantize / dequantize / quantization_error: the seed notes' printed examples (001, 003,
004) reproduced exactly with rounding='nearest', note 002's error figures within noise, row-wise
integer matmul, wire round trips and argument errors. Where a note's code slips (001's and 003's
percentile, 003's asymmetric, 004's dequantization), the correct formula is checked instead
(docs/quantizers.md)."""

import numpy as np
import pytest

import qcomm

# Note 001: X = np.round(X, 2), so the printed array is the exact input.
X001 = np.array([140.92, -49.87, 0., 55.88, -48.87, 132.91, -27.78, -22.58, 105.08, 17.84,
                 60.82, 115.05, 139.92, 78.98, 38.04, 46.68, 69.47, 54.5, -5.47, -22.71])
# Note 003 (torch.randn printed to 4 decimals).
X003 = np.array([[-2.1104, 1.0370, -0.1524, 1.5283],
                 [-0.5803, 0.4747, -0.0349, -0.4250],
                 [1.0839, 0.2665, -0.3881, 1.3272]], dtype=np.float32)


def test_note_001_asymmetric_and_symmetric_8_bit():
    a = qcomm.quantize(X001, "linear", bits=8, mode="asym")
    assert a.scale == 0.7481960784313725 and a.zero_point == 67.0
    assert a.codes.tolist() == [255, 0, 67, 142, 2, 245, 30, 37, 207, 91, 148, 221, 254, 173,
                                118, 129, 160, 140, 60, 37]
    s = qcomm.quantize(X001, "linear", bits=8, mode="sym")
    assert s.scale == 1.1096062992125983 and s.zero_point is None
    assert s.codes.tolist() == [127, -45, 0, 50, -44, 120, -25, -20, 95, 16, 55, 104, 126, 71,
                                34, 42, 63, 49, -5, -20]
    # The printed dequantized arrays and mean squared errors.
    assert np.allclose(qcomm.dequantize(a)[:3], [140.66086275, -50.12913725, 0.0], atol=1e-8)
    assert np.allclose(qcomm.dequantize(s)[:3], [140.92, -49.93228346, 0.0], atol=1e-8)
    assert qcomm.quantization_error(X001, qcomm.dequantize(a)) == 0.04518108581314796
    assert qcomm.quantization_error(X001, qcomm.dequantize(s)) == 0.06479050251100521


def test_note_003_symmetric_8_bit():
    s = qcomm.quantize(X003, "linear", bits=8, mode="sym")
    assert s.codes.tolist() == [[-127, 62, -9, 92], [-35, 29, -2, -26], [65, 16, -23, 80]]
    assert s.codes.shape == (3, 4)
    assert round(qcomm.quantization_error(X003, qcomm.dequantize(s), "sse"), 4) == 0.0002


def test_note_004_layerwise_3_bit():
    arr1 = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32)
    arr2 = np.array([[0.1, 0.2, 0.3], [4, 5, 6], [70, 80, 90]], dtype=np.float32).T
    q1 = qcomm.quantize(arr1, "rowwise", bits=3, axis=None)
    assert q1.codes.tolist() == [[0, 1, 2], [3, 3, 4], [5, 6, 7]]
    assert q1.zero_point == 1.0
    # The note prints 8/7 computed in float64 by numpy; a float32 tensor carries a float32 scale.
    assert q1.scale == float(np.float32(8 / 7))
    q2 = qcomm.quantize(arr2, "rowwise", bits=3, axis=None)
    assert q2.codes.tolist() == [[0, 0, 5], [0, 0, 6], [0, 0, 7]]
    assert q2.scale == 12.842857360839844
    # The correct dequantization (the note adds min * scale instead of min): q * scale + min.
    assert np.allclose(qcomm.dequantize(q1), q1.codes * q1.scale + 1.0)


def test_percentiles_follow_numpy_and_clip():
    rng = np.random.default_rng(0)
    params = np.round(rng.uniform(-50, 150, 10000), 2)
    params[-1] = 1000  # the note's outlier
    q = qcomm.quantize(params, "percentile", bits=8, mode="asym", percentile=99.99)
    alpha, beta = np.percentile(params, 99.99), np.percentile(params, 100 - 99.99)
    # Note 001 divides by 2^b - 10 (a slip); the range is 2^b - 1 steps.
    assert q.scale == (alpha - beta) / 255
    assert q.zero_point == np.round(-beta / q.scale)
    assert q.codes[-1] == 255  # the outlier is clamped
    inliers = qcomm.quantization_error(params[:-1], qcomm.dequantize(q)[:-1])
    plain = qcomm.quantize(params, "linear", bits=8, mode="asym")
    assert inliers < qcomm.quantization_error(params[:-1], qcomm.dequantize(plain)[:-1]) / 10
    s = qcomm.quantize(X003, "percentile", bits=8, mode="sym", percentile=99.9)
    assert s.scale == np.float32(np.percentile(np.abs(X003), 99.9)) / np.float32(127)
    assert s.codes.min() >= -127  # note 003 prints -176: it forgot to clamp


def test_note_002_error_figures_within_noise():
    x = np.random.default_rng(1).standard_normal((1024, 1024)).astype(np.float32)
    mae = lambda q: qcomm.quantization_error(x, qcomm.dequantize(q), "mae")  # noqa: E731
    # "about 0.34" for 3-bit linear over [-absmax, absmax]
    assert 0.32 < mae(qcomm.quantize(x, "linear", bits=3, mode="asym")) < 0.37
    # "as low as 0.012" for dynamic 8-bit with one absmax for the whole tensor
    assert 0.0110 < mae(qcomm.quantize(x, "dynamic", block=x.size)) < 0.0130
    # block-wise (4096) does better
    assert mae(qcomm.quantize(x, "dynamic")) < mae(qcomm.quantize(x, "dynamic", block=x.size))
    m = qcomm.dynamic_map()
    assert m.shape == (256,) and np.all(np.diff(m) > 0) and m[-1] == 1.0 and m[0] >= -1.0


def test_rowwise_matmul_in_integers():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((16, 64))
    b = rng.standard_normal((64, 8))
    qa = qcomm.quantize(a, "rowwise", bits=8)
    qb = qcomm.quantize(np.ascontiguousarray(b.T), "rowwise", bits=8)
    product = qcomm.rowwise_matmul(qa, qb)
    assert np.allclose(product, qcomm.dequantize(qa) @ qcomm.dequantize(qb).T, atol=1e-9)
    assert np.abs(product - a @ b).max() < 0.05 * np.abs(a @ b).max()


@pytest.mark.parametrize("kwargs", [dict(codec="linear", bits=5, mode="asym", block=100),
                                    dict(codec="percentile", bits=6, percentile=99.5),
                                    dict(codec="dynamic", block=256, rounding="stochastic"),
                                    dict(codec="rowwise", bits=4), dict(codec="fp16"),
                                    dict(codec="bf16")])
def test_wire_round_trip(kwargs):
    x = np.random.default_rng(3).standard_normal((10, 100)).astype(np.float32)
    q = qcomm.quantize(x, seed=4, **kwargs)
    back = qcomm.Quantized.from_bytes(q.to_bytes())
    assert np.array_equal(back.words, q.words)
    assert np.array_equal(qcomm.dequantize(back), qcomm.dequantize(q))
    assert qcomm.dequantize(q).dtype == np.float32 and qcomm.dequantize(q).shape == (10, 100)


def test_random_bits_16_is_the_default_and_32_a_quantizer_option_that_travels():
    x = np.random.default_rng(5).standard_normal(5000).astype(np.float32)
    args = dict(codec="linear", bits=4, mode="asym", block=512, rounding="stochastic", seed=9)
    default = qcomm.quantize(x, **args)
    q32 = qcomm.quantize(x, random_bits=32, **args)
    q16 = qcomm.quantize(x, random_bits=16, **args)
    assert default.random_bits == 16 and q32.random_bits == 32 and q16.random_bits == 16
    assert "random_bits" not in default.spec and q32.spec.endswith("random_bits=32")
    assert np.array_equal(default.words, q16.words)
    assert not np.array_equal(q16.words, q32.words)  # other draws
    back32 = qcomm.Quantized.from_bytes(q32.to_bytes())
    assert back32.random_bits == 32 and np.array_equal(back32.words, q32.words)
    assert qcomm.quantize(x, "linear").random_bits is None  # rounding to nearest draws nothing
    assert np.array_equal(q16.scale, q32.scale)
    back = qcomm.Quantized.from_bytes(q16.to_bytes())
    assert back.random_bits == 16 and np.array_equal(back.words, q16.words)
    # Reusing the buffers keeps the option and gives the same words.
    again = qcomm.quantize(x, random_bits=16, out=q16, **args)
    assert again.random_bits == 16 and np.array_equal(again.words, back.words)
    err = np.abs(qcomm.dequantize(q16) - x).max()
    assert err <= np.max(q16.scale) * 1.0001  # within one step
    with pytest.raises(ValueError, match="random_bits must be 32 or 16, got 8"):
        qcomm.quantize(x, random_bits=8, **args)
    for bits in (16, 32):
        with pytest.raises(ValueError,
                           match=f"random_bits={bits} applies to rounding='stochastic'"):
            qcomm.quantize(x, "linear", random_bits=bits)
    with pytest.raises(ValueError, match="random_bits does not apply"):
        qcomm.quantize(x, "fp16", random_bits=16)


def test_bad_arguments_name_what_is_wrong():
    x = np.zeros(10, dtype=np.float32)
    with pytest.raises(ValueError, match="codec must be one of"):
        qcomm.quantize(x, "topk")
    with pytest.raises(ValueError, match=r"bits in \[2, 8\], got 12"):
        qcomm.quantize(x, "linear", bits=12)
    with pytest.raises(TypeError, match="float32 or float64"):
        qcomm.quantize(np.zeros(3, dtype=np.int32))
    with pytest.raises(ValueError, match="mode must be 'sym' or 'asym'"):
        qcomm.quantize(x, mode="both")
    with pytest.raises(ValueError, match="last axis"):
        qcomm.quantize(np.zeros((2, 5)), "rowwise", axis=0)
    with pytest.raises(ValueError, match=r"seed must be in \[0, "):
        qcomm.quantize(x, seed=-1)
    with pytest.raises(ValueError, match="kind must be"):
        qcomm.quantization_error(x, x, "rmse")
    with pytest.raises(ValueError, match="unknown format version 0"):
        qcomm.Quantized.from_bytes(b"QMCW" + bytes(100))


def test_quantize_and_dequantize_reuse_buffers_with_out():
    x = np.random.default_rng(6).standard_normal((32, 100)).astype(np.float32)
    kwargs = dict(codec="linear", bits=4, mode="asym", block=256, rounding="stochastic", seed=3)
    fresh = qcomm.quantize(x, step=2, **kwargs)
    q = qcomm.quantize(x, step=0, **kwargs)
    words = q.words
    again = qcomm.quantize(x, step=2, out=q, **kwargs)
    assert again is q and np.shares_memory(q.words, words)
    np.testing.assert_array_equal(q.words, fresh.words)
    np.testing.assert_array_equal(q.codes, fresh.codes)
    out = np.empty(x.size, np.float32)
    y = qcomm.dequantize(q, out=out)
    assert y.shape == x.shape and np.shares_memory(y, out)
    np.testing.assert_array_equal(y, qcomm.dequantize(fresh))
    with pytest.raises(ValueError, match="out holds 3200 float32 values"):
        qcomm.quantize(x[:5], out=q, **kwargs)
    with pytest.raises(ValueError, match="holds 7 values"):
        qcomm.dequantize(q, out=np.empty(7, np.float32))
    with pytest.raises(TypeError, match="qcomm.Quantized"):
        qcomm.quantize(x, out=words, **kwargs)
