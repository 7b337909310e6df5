#!/usr/bin/env python3
"""qcomm.encode/decode against the seed notebook's numpy coder on the same array.

    PYTHONPATH=build/python /usr/bin/python3 bench/seed_compare.py [--size 25000000] [--bits 4]

Both sides take float64 (the notebook's type); qcomm also runs on float32, its usual input. The
seed coder is tests/python/seed_notebook.py (the notebook ported to Python 3, unchanged otherwise).
Times are the median of --repeats runs.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
import seed_notebook  # noqa: E402

import qcomm  # noqa: E402


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=25_000_000)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x64 = rng.standard_normal(args.size)
    x32 = x64.astype(np.float32)
    threads = os.environ.get("QCOMM_NUM_THREADS", "0")
    print(f"{args.size} values, q={args.bits}, whole-tensor bucket, L2 norm, seed layout; "
          f"QCOMM_NUM_THREADS={threads} ({os.cpu_count()} cores)")

    seed_code = seed_notebook.encode(x64, rng, quantization_level=args.bits)
    rows = [
        ("seed notebook (numpy), float64",
         median_seconds(lambda: seed_notebook.encode(x64, rng, quantization_level=args.bits), args.repeats),
         median_seconds(lambda: seed_notebook.decode(seed_code), args.repeats)),
    ]
    for name, x in (("qcomm, float64", x64), ("qcomm, float32", x32)):
        code = qcomm.encode(x, args.bits, seed=1)
        rows.append((name,
                     median_seconds(lambda: qcomm.encode(x, args.bits, seed=1), args.repeats),
                     median_seconds(lambda: qcomm.decode(code), args.repeats)))
    base_encode, base_decode = rows[0][1], rows[0][2]
    print(f"{'coder':34} {'encode s':>9} {'decode s':>9} {'encode x':>9} {'decode x':>9}")
    for name, enc, dec in rows:
        print(f"{name:34} {enc:9.3f} {dec:9.3f} {base_encode / enc:9.1f} {base_decode / dec:9.1f}")
    # The seed's decoder reads qcomm's words, and qcomm reads the seed's: same values.
    assert np.array_equal(qcomm.decode(seed_code), seed_notebook.decode(seed_code))


if __name__ == "__main__":
    main()
