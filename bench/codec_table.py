#!/usr/bin/env python3
"""Turns qcomm_codec_bench's JSON (--benchmark_out=FILE --benchmark_out_format=json) into the
Markdown tables of docs/performance.md: one row per QSGD (op, layout, bits, bucket, size, threads)
and one per block quantizer (op, spec, size, threads), with the codec's GB/s of float32 input, the
memcpy GB/s timed after every codec call in the same process, and the median of their per-call
ratios (bench/codec_bench.cc, timeLoop).
"""

import json
import re
import sys


def main(path):
    with open(path) as f:
        data = json.load(f)
    context = data["context"]
    print(f"host: {context.get('host_name', '?')}, {context['num_cpus']} CPUs at "
          f"{context['mhz_per_cpu']} MHz, {context.get('library_build_type', '?')} benchmark library, "
          f"{context['date']}")
    print()
    print("| op | layout | q | bucket | norm | random bits | values | threads | codec GB/s | "
          "memcpy GB/s | x memcpy |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for b in data["benchmarks"]:
        m = re.match(r"BM_(\w+)/layout:(\d)/bits:(\d+)/bucket:(\d+)/log2n:(\d+)/threads:(\d+)"
                     r"(?:/norm:(\d))?(?:/rbits:(\d+))?(?:/P:(\d+))?",
                     b["name"])
        if not m or "error_occurred" in b:
            continue
        op, layout, bits, bucket, log2n, _, norm, rbits, p = m.groups()
        if p:
            op = f"{op} P={p}"
        print(f"| {op.lower()} | {'seed' if layout == '0' else 'compact'} | {bits} | "
              f"{'whole' if bucket == '0' else bucket} | {'max' if norm == '1' else 'l2'} | {rbits or 32} | 2^{log2n} | {int(b['threads'])} | "
              f"{b['codec_GBps']:.2f} | {b['memcpy_GBps']:.2f} | {b['x_memcpy']:.2f} |")
    quant = [b for b in data["benchmarks"]
             if re.match(r"BM_(Q|Deq)uantize/spec:", b["name"]) and "error_occurred" not in b]
    if not quant:
        return
    print()
    print("| op | codec | values | threads | codec GB/s | memcpy GB/s | x memcpy |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for b in quant:
        m = re.match(r"BM_(\w+)/spec:\d+/log2n:(\d+)/threads:(\d+)", b["name"])
        op, log2n, _ = m.groups()
        print(f"| {'encode' if op == 'Quantize' else 'decode'} | `{b.get('label', '?')}` | 2^{log2n} | "
              f"{int(b['threads'])} | {b['codec_GBps']:.2f} | {b['memcpy_GBps']:.2f} | "
              f"{b['x_memcpy']:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/dev/stdin")
