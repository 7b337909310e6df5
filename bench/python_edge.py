#!/usr/bin/env python3
"""The Python edge against the C++ codec: qcomm.encode/decode (QSGD, q=4, buckets of 512, max
norm, compact) and qcomm.quantize/dequantize (linear 8-bit sym, linear 4-bit asym, dynamic, fp16),
64M float32 values, default threads, GB/s of float32 values beside a numpy copy of the same bytes
measured in the same run; each call fresh (new result arrays) and with out= (buffers reused).
Stochastic rounding draws 32 random bits per value here, as in the C++ rows this was first
compared with (16 is the default since 2026-12-04).

    PYTHONPATH=build/python /usr/bin/python3 bench/python_edge.py [--log2n 26] [--repeat 3]

Compare with the C++ rows at threads:0 of build/bench/qcomm_codec_bench (docs/performance.md).
"""

import argparse
import time

import numpy as np

import qcomm

QUANTIZERS = {
    "linear:bits=8,mode=sym,block=4096": dict(codec="linear", bits=8, block=4096,
                                              rounding="stochastic", random_bits=32),
    "linear:bits=4,mode=asym,block=512": dict(codec="linear", bits=4, mode="asym", block=512,
                                              rounding="stochastic", random_bits=32),
    "dynamic:block=4096": dict(codec="dynamic", block=4096, rounding="stochastic",
                               random_bits=32),
    "fp16": dict(codec="fp16", rounding="nearest"),
}


def best(call, repeat):
    call()  # first touch of fresh pages out of the timing
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log2n", type=int, default=26)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    block = np.random.default_rng(0).standard_normal(1 << 16).astype(np.float32)
    x = np.tile(block, max(1, (1 << args.log2n) >> 16))
    copy = np.empty_like(x)
    out = np.empty_like(x)
    copy_s = best(lambda: np.copyto(copy, x), 7)
    gbps = lambda s: x.nbytes / s / 1e9
    print(f"{x.size} float32 values; numpy copy {gbps(copy_s):.1f} GB/s")
    print(f"{'codec':48s} {'encode':>7s} {'out=':>7s} {'x copy':>7s} {'decode':>7s} {'out=':>7s} "
          f"{'x copy':>7s}  (GB/s)")
    rows = [("qsgd:bits=4,bucket=512,norm=max,layout=compact", None)] + list(QUANTIZERS.items())
    for name, kwargs in rows:
        if kwargs is None:
            enc = lambda o=None: qcomm.encode(x, 4, seed=1, bucket_size=512, norm="max",
                                              layout="compact", random_bits=32, out=o)
            dec = lambda c, o=None: qcomm.decode(c, out=o)
        else:
            enc = lambda o=None, k=kwargs: qcomm.quantize(x, seed=1, out=o, **k)
            dec = lambda c, o=None: qcomm.dequantize(c, out=o)
        code = enc()
        e, eo = best(enc, args.repeat), best(lambda: enc(code), args.repeat)
        d, do = best(lambda: dec(code), args.repeat), best(lambda: dec(code, out), args.repeat)
        print(f"{name:48s} {gbps(e):7.2f} {gbps(eo):7.2f} {copy_s / eo:7.2f} {gbps(d):7.2f} "
              f"{gbps(do):7.2f} {copy_s / do:7.2f}")


if __name__ == "__main__":
    main()
