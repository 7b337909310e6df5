"""The `qcomm codec` command on real .npy files: round trips, info, and errors for bad files."""

import json
import subprocess

import numpy as np
import pytest

import qcomm


def run(qcomm_bin, *args, ok=True):
    result = subprocess.run([qcomm_bin, *map(str, args)], capture_output=True, text=True)
    if ok:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0, result.stdout
    return result


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), ()])
def test_encode_decode_round_trip(tmp_path, qcomm_bin, dtype, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    np.save(tmp_path / "x.npy", x)
    run(qcomm_bin, "codec", "encode", tmp_path / "x.npy", tmp_path / "x.qc", "--bits", 8,
        "--bucket", 5, "--norm", "max", "--layout", "compact", "--seed", 3)
    run(qcomm_bin, "codec", "decode", tmp_path / "x.qc", tmp_path / "y.npy")
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == dtype and y.shape == shape
    # The file is the same wire message the Python API reads.
    code = qcomm.from_bytes((tmp_path / "x.qc").read_bytes())
    assert np.array_equal(qcomm.decode(code), y)
    scales = np.repeat(np.atleast_1d(code["norm"]), 5)[: x.size].reshape(shape)
    assert np.all(np.abs(y - x) <= scales / 255 * (1 + 1e-6))
    # Same seed, same words as qcomm.encode.
    same = qcomm.encode(x, 8, seed=3, bucket_size=5, norm="max", layout="compact")
    assert np.array_equal(same["neo"], code["neo"])


def test_npy_version_2_and_info(tmp_path, qcomm_bin):
    x = np.arange(1000, dtype=np.float32).reshape(10, 100)
    with open(tmp_path / "v2.npy", "wb") as f:
        np.lib.format.write_array(f, x, version=(2, 0))
    run(qcomm_bin, "codec", "encode", tmp_path / "v2.npy", tmp_path / "v2.qc", "--bits", 4,
        "--bucket", 512)
    info = json.loads(run(qcomm_bin, "codec", "info", tmp_path / "v2.qc", "--json").stdout)
    assert info["shape"] == [10, 100] and info["count"] == 1000 and info["buckets"] == 2
    assert info["bits"] == 4 and info["layout"] == "seed" and info["crc32c"] is True
    # buckets of 512 and 488 values at 10 per word: 52 + 49 words
    assert info["words"] == 101 and info["message_bytes"] == 64 + 16 + 8 + 8 * 101
    text = run(qcomm_bin, "codec", "info", tmp_path / "v2.qc").stdout
    assert "bits_per_value" in text and "compression_ratio" in text


@pytest.mark.parametrize("make, message", [
    (lambda p: np.save(p, np.arange(4)), "dtype '<i8' is not supported"),
    (lambda p: np.save(p, np.ones(4, dtype=">f4")), "dtype '>f4' is not supported"),
    (lambda p: np.save(p, np.asfortranarray(np.ones((3, 4), np.float32))), "Fortran-ordered"),
    (lambda p: p.write_bytes(b"hello world, not numpy"), "not an .npy file"),
    (lambda p: p.write_bytes(np.lib.format.header_data_from_array_1_0(np.ones(3)) and b""),
     "not an .npy file"),
])
def test_bad_npy_files(tmp_path, qcomm_bin, make, message):
    path = tmp_path / "bad.npy"
    make(path)
    result = run(qcomm_bin, "codec", "encode", path, tmp_path / "out.qc", ok=False)
    assert message in result.stderr


def test_truncated_npy_data(tmp_path, qcomm_bin):
    np.save(tmp_path / "x.npy", np.ones(100, np.float32))
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[:-4])
    result = run(qcomm_bin, "codec", "encode", tmp_path / "x.npy", tmp_path / "x.qc", ok=False)
    assert "needs 400 data bytes, the file has 396" in result.stderr


def test_bad_messages_and_options(tmp_path, qcomm_bin):
    np.save(tmp_path / "x.npy", np.ones(100, np.float32))
    run(qcomm_bin, "codec", "encode", tmp_path / "x.npy", tmp_path / "x.qc")
    message = (tmp_path / "x.qc").read_bytes()
    (tmp_path / "cut.qc").write_bytes(message[:-3])
    result = run(qcomm_bin, "codec", "decode", tmp_path / "cut.qc", tmp_path / "y.npy", ok=False)
    assert "cut.qc: message is" in result.stderr and "truncated" in result.stderr
    result = run(qcomm_bin, "codec", "info", tmp_path / "missing.qc", ok=False)
    assert "cannot open" in result.stderr
    result = run(qcomm_bin, "codec", "encode", tmp_path / "x.npy", tmp_path / "y.qc", "--bits", 0,
                 ok=False)
    assert "bits must be in [1, 16], got 0" in result.stderr
    result = run(qcomm_bin, "codec", "encode", tmp_path / "x.npy", tmp_path / "y.qc", "--norm",
                 "l3", ok=False)
    assert "norm must be 'l2' or 'max', got 'l3'" in result.stderr


def test_demo_prints_the_table(qcomm_bin):
    out = run(qcomm_bin, "demo", "--codec-only", "--size", 20000, "--repeats", 1).stdout
    rows = [line for line in out.splitlines() if line[:2].strip().isdigit()]
    assert len(rows) == 18  # q = 1..9, both layouts
    for row in rows:
        assert float(row.split()[5]) < 1.0 + 1e-6  # max error below one step


def test_run_passes_the_programs_own_flags_through(qcomm_bin):
    out = run(qcomm_bin, "run", "--np", 3, "--dry-run", "./prog", "-b", "1M", "--np", "7").stdout
    after = out.split("mpirun", 1)[1].split()
    assert after[:2] == ["-np", "3"]  # qcomm's --np; the program's own --np 7 goes to it
    assert after[-5:] == ["./prog", "-b", "1M", "--np", "7"]
    bad = run(qcomm_bin, "run", "--np", 2, ok=False)
    assert "no program to run" in bad.stderr
    missing = run(qcomm_bin, "run", "--np", 2, "--cluster", "nosuch", "./prog", ok=False)
    assert "no emulated cluster named 'nosuch'" in missing.stderr
