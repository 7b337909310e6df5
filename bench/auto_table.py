#!/usr/bin/env python3
"""auto against the fastest pinned row, per size, from `qcomm bench allreduce --json` output.

    qcomm bench allreduce [--cluster NAME] --np 4 -b 4K -e 64M -f 4 -n 30 -w 3 --min-time 2 \
        --algorithms mpi,allgather,sra,hierarchical,sra,hierarchical,auto \
        --order interleaved --stat median --json run.json
    python3 bench/auto_table.py run.json [more.json ...]

Prints a Markdown table per file: the fastest pinned row, auto's row and the algorithm it settled
on, their ratio (a ratio above 1 + --tolerance is marked and counted), and, where an algorithm is
named twice in --algorithms, how far apart its two rows are: the benchmark's own noise in the same
rounds, the floor under any "within x% of the fastest" reading. Exits 1 when any size is a miss.
"""
import argparse
import json
import sys


def table(path, tolerance):
    with open(path) as f:
        rows = json.load(f)["rows"]
    sizes = sorted({r["size"] for r in rows})
    misses = 0
    print(f"{path}\n")
    print("| size per rank | fastest row (ms) | auto (ms) | ratio | same-algorithm rows apart | trials |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        here = [r for r in rows if r["size"] == size]
        autos = [r for r in here if r["algorithm"] == "auto"]
        pinned = [r for r in here if r["algorithm"] != "auto"]
        if len(autos) != 1 or not pinned:
            sys.exit(f"{path}: size {size} needs one auto row and at least one other")
        a = autos[0]
        best = min(pinned, key=lambda r: r["time_us"])
        ratio = a["time_us"] / best["time_us"]
        missed = ratio > 1.0 + tolerance
        misses += missed
        by_name = {}
        for r in pinned:
            by_name.setdefault(r["algorithm"], []).append(r["time_us"])
        apart = [max(t) / min(t) for t in by_name.values() if len(t) > 1]
        name = "MPI_Allreduce" if best["algorithm"] == "mpi" else best["algorithm"]
        label = f"{size // 1048576} MB" if size >= 1048576 else f"{size // 1024} KB"
        ratio_text = f"**{ratio:.2f}**" if missed else f"{ratio:.2f}"
        apart_text = f"{max(apart):.2f}" if apart else "-"
        print(f"| {label} | {name} {best['time_us'] / 1e3:.3f} | {a['chosen']} "
              f"{a['time_us'] / 1e3:.3f} | {ratio_text} | {apart_text} | {a['auto_trials']} |")
    print(f"\n{len(sizes) - misses} of {len(sizes)} sizes within {tolerance:.0%}\n")
    return misses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="files written by qcomm bench allreduce --json")
    parser.add_argument("--tolerance", type=float, default=0.10,
                        help="how far behind the fastest row auto may be (default 0.10)")
    args = parser.parse_args()
    misses = sum(table(path, args.tolerance) for path in args.json)
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
