"""qcomm sweep on a small local grid: the files it writes, and clear errors for bad sweep files."""

import csv
import json

import pytest

from test_cli import run


def test_local_sweep_writes_csv_json_plots_and_report(tmp_path, qcomm_bin):
    toml = tmp_path / "tiny.toml"
    toml.write_text('[sweep]\nname = "tiny"\nlinks = ["local"]\nranks = [2]\nsizes = ["64K", "256K"]\n'
                    'bits = [2, 4]\nalgorithms = ["allgather", "sra"]\niters = 1\nwarmup = 0\n')
    out = tmp_path / "out"
    result = run(qcomm_bin, "sweep", toml, "--out", out)
    assert "[4/4]" in result.stdout
    rows = list(csv.DictReader(open(out / "results.csv")))
    # per size: MPI once, then 2 codecs x 2 algorithms
    assert len(rows) == 2 * (1 + 2 * 2)
    assert {r["algorithm"] for r in rows} == {"mpi", "allgather", "sra"}
    assert all(r["wrong"] == "0" for r in rows)
    assert json.load(open(out / "results.json"))["sweep"]["name"] == "tiny"
    for png in ("time-local-2ranks.png", "busbw-local-2ranks.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "![time per allreduce (ms)](time-local-2ranks.png)" in report
    assert "| 65536 | mpi | none |" in report


@pytest.mark.parametrize("text, message", [
    ("[other]\n", "needs a [sweep] table"),
    ("[sweep]\nlinkz = [\"local\"]\n", "unknown keys ['linkz']"),
    ("[sweep]\nbits = []\n", "bits must be a non-empty list"),
    ("[sweep]\nalgorithms = [\"ring\"]\n", "algorithms ['ring'] are not among allgather, sra, hierarchical, uncompressed, auto"),
    ("[sweep]\niters = 0\n", "iters must be an integer >= 1"),
    ("[sweep\n", "Expected ']'"),
])
def test_bad_sweep_files(tmp_path, qcomm_bin, text, message):
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    result = run(qcomm_bin, "sweep", toml, "--out", tmp_path / "out", ok=False)
    assert message in result.stderr
