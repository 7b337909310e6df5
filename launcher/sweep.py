#!/usr/bin/env python3
"""qcomm sweep: runs the allreduce benchmark over a grid from a TOML file and writes results.csv,
results.json, one PNG per (link, ranks) and metric, and report.md embedding them.

Started by `qcomm sweep FILE.toml [--out DIR]`, which passes --qcomm (its own path). Grid keys
(lists; see examples/sweep.toml): links ("local" or a tc rate such as "1gbit"), ranks, sizes
(bytes, K/M/G suffixes), bits, bucket, layout, norm, algorithms (allgather, sra, hierarchical, uncompressed, auto). MPI_Allreduce
runs beside them in every group: the uncompressed baseline is always measured and drawn.
"""

import argparse
import csv
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib

KEYS = {"links": ["local"], "ranks": [4], "sizes": ["1M", "16M"], "bits": [4], "bucket": [512],
        "layout": ["compact"], "norm": ["max"], "algorithms": ["sra"], "iters": 3, "warmup": 1}


def fail(message):
    print(f"qcomm sweep: {message}", file=sys.stderr)
    sys.exit(2)


def load(path):
    try:
        with open(path, "rb") as f:
            config = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        fail(f"{path}: {e}")
    grid = config.get("sweep")
    if not isinstance(grid, dict):
        fail(f"{path}: needs a [sweep] table")
    unknown = set(grid) - set(KEYS) - {"name"}
    if unknown:
        fail(f"{path}: unknown keys {sorted(unknown)} (known: name, {', '.join(KEYS)})")
    spec = {k: grid.get(k, v) for k, v in KEYS.items()}
    for k, v in spec.items():
        if k in ("iters", "warmup"):
            if not isinstance(v, int) or v < (1 if k == "iters" else 0):
                fail(f"{path}: {k} must be an integer >= {1 if k == 'iters' else 0}")
        elif not isinstance(v, list) or not v:
            fail(f"{path}: {k} must be a non-empty list")
    known = ("allgather", "sra", "hierarchical", "uncompressed", "auto")
    bad = [a for a in spec["algorithms"] if a not in known]
    if bad:
        fail(f"{path}: algorithms {bad} are not among {', '.join(known)}")
    spec["name"] = grid.get("name", os.path.splitext(os.path.basename(path))[0])
    return spec


def size_bytes(text):
    text = str(text)
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def run(argv, what):
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"{what} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--out", default=None, help="output folder (default: sweep-NAME)")
    parser.add_argument("--qcomm", default="qcomm", help="the qcomm command")
    parser.add_argument("--cluster", default=None,
                        help="run every group on this existing cluster (qcomm cluster up, "
                             "namespaces or --docker) instead of the file's links")
    args = parser.parse_args()
    spec = load(args.file)
    if args.cluster:
        spec["links"] = [args.cluster]  # the cluster's name labels its rows and plots
    out = args.out or f"sweep-{spec['name']}"
    os.makedirs(out, exist_ok=True)
    codecs = [f"qsgd:bits={b},bucket={k},norm={n},layout={l}" for b, k, l, n in
              itertools.product(spec["bits"], spec["bucket"], spec["layout"], spec["norm"])]
    groups = list(itertools.product(spec["links"], spec["ranks"]))
    steps = len(groups) * len(spec["sizes"]) * len(codecs)
    if not args.cluster and any(link != "local" for link in spec["links"]) and os.geteuid() != 0:
        fail("emulated links need root (network namespaces); use links = [\"local\"] otherwise")
    rows, done, started = [], 0, time.time()
    for link, ranks in groups:
        cluster, own = [], False
        if args.cluster:
            cluster = ["--cluster", args.cluster]
        elif link != "local":
            own = True
            run([args.qcomm, "cluster", "down", "qcsweep"], "cleaning an old sweep cluster")
            run([args.qcomm, "cluster", "up", str(ranks), "--link", link, "--prefix", "qcsweep",
                 "--subnet", "10.231.81"], f"qcomm cluster up {ranks} --link {link}")
            cluster = ["--cluster", "qcsweep"]
        try:
            for size in spec["sizes"]:
                for i, codec in enumerate(codecs):
                    done += 1
                    algorithms = (["mpi"] if i == 0 else []) + spec["algorithms"]
                    print(f"\r[{done}/{steps}] link={link} ranks={ranks} size={size} {codec}   ",
                          end="", flush=True)
                    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
                        b = str(size_bytes(size))
                        run([args.qcomm, "bench", "allreduce", "--np", str(ranks), *cluster,
                             "-b", b, "-e", b, "-n", str(spec["iters"]), "-w",
                             str(spec["warmup"]), "--codec", codec, "--algorithms",
                             ",".join(algorithms), "--json", tmp.name], "the benchmark")
                        for row in json.load(open(tmp.name))["rows"]:
                            row.update(link=link, ranks=ranks)
                            rows.append(row)
        finally:
            if own:
                run([args.qcomm, "cluster", "down", "qcsweep"], "qcomm cluster down")
    print(f"\rdone: {steps} benchmark runs in {time.time() - started:.0f} s" + " " * 40)
    fields = ["link", "ranks", "size", "count", "algorithm", "codec", "time_us", "algbw_GBps",
              "busbw_GBps", "wrong", "wire_bytes", "ratio", "err"]
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in fields})
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"sweep": spec, "rows": rows}, f, indent=2)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import sweep_plot  # noqa: E402
    sweep_plot.write(rows, out, spec["name"], args.file)
    print(f"wrote {out}/results.csv, results.json, report.md and the plots")


if __name__ == "__main__":
    main()
