"""qcomm's Python codec API: seed-notebook interoperability in both directions, the dict format,
wire bytes, and clear errors for bad input."""

import math

import numpy as np
import pytest

import qcomm
import seed_notebook as seed

SHAPES = [(20, 1), (7,), (3, 4, 5), (1,), (1000,)]


@pytest.mark.parametrize("q", range(1, 10))
@pytest.mark.parametrize("shape", SHAPES)
def test_seed_codes_decode_to_the_seed_values(q, shape):
    rng = np.random.default_rng(q)
    x = rng.standard_normal(shape)
    code = seed.encode(x, rng, quantization_level=q)
    expected = seed.decode(code)
    got = qcomm.decode(code)
    assert got.dtype == np.float64 and got.shape == expected.shape
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("q", range(1, 10))
@pytest.mark.parametrize("shape", SHAPES)
def test_seed_decoder_reads_qcomm_codes(q, shape):
    rng = np.random.default_rng(100 + q)
    x64 = rng.standard_normal(shape)
    code = qcomm.encode(x64, quantization_level=q, seed=q)
    assert np.array_equal(seed.decode(code), qcomm.decode(code))  # float64: same arithmetic
    code32 = qcomm.encode(x64.astype(np.float32), quantization_level=q, seed=q)
    np.testing.assert_allclose(seed.decode(code32), qcomm.decode(code32), rtol=1e-6, atol=1e-30)


def test_code_dict_has_the_seed_keys():
    x = np.arange(-10, 10, dtype=np.float32).reshape(4, 5)
    code = qcomm.encode(x, 4, seed=0)
    assert set(code) >= {"neo", "norm", "quantization_level", "len_each_section",
                         "num_int_each_64_bits", "shape"}
    assert code["neo"].dtype == np.uint64 and code["neo"].shape == (2,)
    assert code["num_int_each_64_bits"] == 10 and code["len_each_section"] == 2
    assert code["shape"] == (4, 5) and code["quantization_level"] == 4
    assert isinstance(code["norm"], float)
    assert code["norm"] == pytest.approx(float(np.linalg.norm(x)), rel=1e-6)
    compact = qcomm.encode(x, 4, seed=0, layout="compact", norm="max", bucket_size=8)
    assert compact["num_int_each_64_bits"] == 12 and compact["layout"] == "compact"
    assert compact["norm"].shape == (3,) and compact["bucket_size"] == 8


@pytest.mark.parametrize("layout", ["seed", "compact"])
@pytest.mark.parametrize("norm", ["l2", "max"])
@pytest.mark.parametrize("bucket", [None, 1, 7, 512])
def test_round_trip_within_one_step(layout, norm, bucket):
    x = np.random.default_rng(1).standard_normal(3001).astype(np.float32)
    code = qcomm.encode(x, 6, seed=5, bucket_size=bucket, norm=norm, layout=layout)
    y = qcomm.decode(code)
    assert y.dtype == np.float32
    b = code["bucket_size"]
    scales = np.atleast_1d(code["norm"]).astype(np.float64)
    step = np.repeat(scales, b)[: x.size] / 63
    assert np.all(np.abs(y.astype(np.float64) - x) <= step * (1 + 1e-6))


def test_same_seed_same_words_and_fresh_seeds_differ():
    x = np.random.default_rng(2).standard_normal(5000)
    a = qcomm.encode(x, 4, seed=7)["neo"]
    assert np.array_equal(a, qcomm.encode(x, 4, seed=7)["neo"])
    assert not np.array_equal(a, qcomm.encode(x, 4, seed=8)["neo"])
    assert not np.array_equal(a, qcomm.encode(x, 4, seed=7, step=1)["neo"])
    assert not np.array_equal(qcomm.encode(x, 4)["neo"], qcomm.encode(x, 4)["neo"])


def test_unbiased_over_steps():
    x = np.random.default_rng(3).standard_normal(64).astype(np.float32)
    mean = np.mean([qcomm.decode(qcomm.encode(x, 2, seed=1, step=t)) for t in range(4000)], axis=0)
    step = np.linalg.norm(x) / 3
    assert np.all(np.abs(mean - x) <= 5 * step * 0.5 / math.sqrt(4000) + 1e-6)


def test_zeros_nan_inf_and_empty():
    assert np.array_equal(qcomm.decode(qcomm.encode(np.zeros(100), 4, seed=0)), np.zeros(100))
    x = np.ones(300, dtype=np.float32)
    x[150] = np.inf
    code = qcomm.encode(x, 4, seed=0, bucket_size=100)
    assert code["nonfinite"]
    y = qcomm.decode(code)
    assert np.isnan(y[100:200]).all() and np.isfinite(y[:100]).all() and np.isfinite(y[200:]).all()
    empty = qcomm.encode(np.zeros((0, 3), dtype=np.float32), 4, seed=0)
    assert qcomm.decode(empty).shape == (0, 3) and empty["len_each_section"] == 0
    scalar = qcomm.encode(np.array(2.5), 4, seed=0)
    assert qcomm.decode(scalar).shape == ()


def test_wire_bytes_round_trip_and_reject_corruption():
    x = np.random.default_rng(4).standard_normal((10, 30)).astype(np.float32)
    code = qcomm.encode(x, 3, seed=1, bucket_size=64, layout="compact")
    message = qcomm.to_bytes(code)
    back = qcomm.from_bytes(message)
    assert np.array_equal(back["neo"], code["neo"]) and back["shape"] == (10, 30)
    assert np.array_equal(qcomm.decode(back), qcomm.decode(code))
    assert np.array_equal(qcomm.decode(qcomm.from_bytes(bytearray(message))), qcomm.decode(code))
    with pytest.raises(ValueError, match="shorter than the 64-byte header"):
        qcomm.from_bytes(message[:10])
    with pytest.raises(ValueError, match="truncated"):
        qcomm.from_bytes(message[:-8])
    with pytest.raises(ValueError, match="bad magic"):
        qcomm.from_bytes(b"XXXX" + message[4:])
    corrupt = bytearray(message)
    corrupt[-1] ^= 0xFF
    with pytest.raises(ValueError, match="CRC32C mismatch"):
        qcomm.from_bytes(bytes(corrupt))
    with pytest.raises(TypeError, match="from_bytes expects bytes"):
        qcomm.from_bytes("not bytes")
    # A seed-notebook code travels too (float64 scale).
    rng = np.random.default_rng(5)
    seed_code = seed.encode(rng.random((20, 1)), rng, quantization_level=4)
    assert np.array_equal(qcomm.decode(qcomm.from_bytes(qcomm.to_bytes(seed_code))),
                          seed.decode(seed_code))


@pytest.mark.parametrize("call, error, message", [
    (lambda: qcomm.encode([1.0, 2.0]), TypeError, "numpy array or torch tensor, got list"),
    (lambda: qcomm.encode(np.arange(5)), TypeError, "float32 or float64 values, got int64"),
    (lambda: qcomm.encode(np.ones(3, np.float16)), TypeError, "got float16"),
    (lambda: qcomm.encode(np.ones(3), 0), ValueError, r"quantization_level must be in \[1, 16\], got 0"),
    (lambda: qcomm.encode(np.ones(3), 17), ValueError, r"quantization_level must be in \[1, 16\], got 17"),
    (lambda: qcomm.encode(np.ones(3), 4.0), TypeError, "quantization_level must be an integer, got float"),
    (lambda: qcomm.encode(np.ones(3), True), TypeError, "quantization_level must be an integer, got bool"),
    (lambda: qcomm.encode(np.ones(3), bucket_size=0), ValueError, r"bucket_size must be in \[1, "),
    (lambda: qcomm.encode(np.ones(3), seed=-1), ValueError, r"seed must be in \[0, "),
    (lambda: qcomm.encode(np.ones(3), norm="l1"), ValueError, "norm must be one of 'l2', 'max', got 'l1'"),
    (lambda: qcomm.encode(np.ones(3), layout="dense"), ValueError, "layout must be one of 'seed', 'compact'"),
    (lambda: qcomm.decode([1, 2]), TypeError, "decode expects a code dict, got list"),
    (lambda: qcomm.decode({"neo": np.zeros(1, np.uint64)}), ValueError, "missing the key 'norm'"),
])
def test_bad_arguments_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_inconsistent_codes_are_rejected():
    good = qcomm.encode(np.random.default_rng(6).standard_normal(100), 4, seed=0)

    def bad(**changes):
        code = dict(good)
        code.update(changes)
        return code

    with pytest.raises(ValueError, match="code\\['neo'\\] holds 9 words but 100 values"):
        qcomm.decode(bad(neo=good["neo"][:-1]))
    with pytest.raises(ValueError, match="num_int_each_64_bits'\\] is 9"):
        qcomm.decode(bad(num_int_each_64_bits=9))
    with pytest.raises(ValueError, match="len_each_section'\\] is 3"):
        qcomm.decode(bad(len_each_section=3))
    with pytest.raises(ValueError, match="shape'\\] must be a tuple of non-negative integers"):
        qcomm.decode(bad(shape=(-1, 100)))
    with pytest.raises(ValueError, match="quantization_level'\\] must be in \\[1, 16\\], got 20"):
        qcomm.decode(bad(quantization_level=20))
    with pytest.raises(ValueError, match="code\\['norm'\\] holds 2 scales"):
        qcomm.decode(bad(norm=np.array([1.0, 2.0])))
    with pytest.raises(ValueError, match="scale of bucket 0 is invalid: -1"):
        qcomm.decode(bad(norm=-1.0))
    with pytest.raises(ValueError, match="code\\['layout'\\] must be one of"):
        qcomm.decode(bad(layout="other"))
    with pytest.raises(ValueError, match="1-d array of uint64 words, got float64"):
        qcomm.decode(bad(neo=np.ones(10)))


def test_torch_tensors_are_accepted_when_torch_is_installed():
    torch = pytest.importorskip("torch")
    t = torch.linspace(-1, 1, 50)
    code = qcomm.encode(t, 8, seed=0)
    assert np.abs(qcomm.decode(code) - t.numpy()).max() <= code["norm"] / 255


def test_encode_and_decode_reuse_buffers_with_out():
    x = np.random.default_rng(3).standard_normal((64, 33)).astype(np.float32)
    kwargs = dict(seed=5, bucket_size=128, norm="max", layout="compact")
    fresh = qcomm.encode(x, 4, step=1, **kwargs)
    code = qcomm.encode(x, 4, step=0, **kwargs)
    words = code["neo"]
    again = qcomm.encode(x, 4, step=1, out=code, **kwargs)
    assert again is code and np.shares_memory(again["neo"], words)   # no new buffer
    np.testing.assert_array_equal(again["neo"], fresh["neo"])
    np.testing.assert_array_equal(again["norm"], fresh["norm"])     # every key is the new code
    out = np.empty(x.size, np.float32)
    y = qcomm.decode(again, out=out)
    assert y.shape == x.shape and np.shares_memory(y, out)
    np.testing.assert_array_equal(y, qcomm.decode(fresh))
    with pytest.raises(ValueError, match="needs"):
        qcomm.encode(x[:10], 4, out=code, **kwargs)        # another geometry
    with pytest.raises(ValueError, match="did not make"):
        qcomm.encode(x, 4, out={"neo": np.zeros(3, np.uint64)}, **kwargs)
    with pytest.raises(TypeError, match="code dict from qcomm.encode"):
        qcomm.encode(x, 4, out={"neo": [1, 2]}, **kwargs)
    with pytest.raises(ValueError, match="holds 10 values"):
        qcomm.decode(code, out=np.empty(10, np.float32))
    with pytest.raises(ValueError, match="float32"):
        qcomm.decode(code, out=np.empty(x.size, np.int32))


def test_decode_reads_the_words_where_they_lie():
    x = np.random.default_rng(4).standard_normal(1000).astype(np.float32)
    code = qcomm.encode(x, 4, seed=1, bucket_size=100, layout="compact")
    code["neo"][3] ^= np.uint64(0xF0)                      # written through the array
    copied = dict(code, neo=code["neo"].copy())            # an array qcomm did not make
    np.testing.assert_array_equal(qcomm.decode(code), qcomm.decode(copied))


def test_random_bits_16_is_the_default_and_32_a_code_option_that_travels():
    x = np.random.default_rng(5).standard_normal(4096).astype(np.float32)
    args = dict(seed=9, bucket_size=512, norm="max", layout="compact")
    default = qcomm.encode(x, 4, **args)
    c32 = qcomm.encode(x, 4, random_bits=32, **args)
    c16 = qcomm.encode(x, 4, random_bits=16, **args)
    assert default["random_bits"] == 16 and c32["random_bits"] == 32 and c16["random_bits"] == 16
    np.testing.assert_array_equal(default["neo"], c16["neo"])
    assert not np.array_equal(c16["neo"], c32["neo"])
    back32 = qcomm.from_bytes(qcomm.to_bytes(c32))
    assert back32["random_bits"] == 32
    np.testing.assert_array_equal(back32["neo"], c32["neo"])
    # A dict without the key (the seed notebook's, or one from before 16 was the default) says 32.
    legacy = {k: v for k, v in c32.items() if k != "random_bits"}
    assert qcomm.to_bytes(legacy) == qcomm.to_bytes(c32)
    assert np.max(np.abs(qcomm.decode(c16) - x)) <= np.max(c16["norm"]) / 15 * 1.0001
    back = qcomm.from_bytes(qcomm.to_bytes(c16))
    assert back["random_bits"] == 16
    np.testing.assert_array_equal(back["neo"], c16["neo"])
    for bad in (24, 8, True, "16"):
        with pytest.raises(ValueError, match="random_bits must be 32 or 16, got"):
            qcomm.encode(x, 4, random_bits=bad)
