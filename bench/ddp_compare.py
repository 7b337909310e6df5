#!/usr/bin/env python3
"""DDP training of an MLP on the digits data set with 4 processes, side by side: plain allreduce,
PyTorch's fp16_compress_hook and powerSGD_hook (rank 1 and 4), qcomm 4-bit, and qcomm 2-bit with
error feedback. Columns: final test accuracy, bytes sent per step per rank (measured from the
network interface counters, not computed), and time per step.

    PYTHONPATH=build/python /usr/bin/python3 bench/ddp_compare.py
    PYTHONPATH=build/python /usr/bin/python3 bench/ddp_compare.py --cluster qcomm   # as root,
        after `qcomm cluster up 4 --link 1gbit`: one rank per emulated host

Locally every rank talks over `lo`, whose counter sees all ranks: bytes are its delta / ranks.
On a cluster each rank has its own eth0, and rank 0 reports its own.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

METHODS = ["plain", "fp16", "powersgd-1", "powersgd-4", "qcomm-4bit", "qcomm-2bit-ef"]


def interface_bytes(name):
    with open("/proc/net/dev") as f:
        for line in f:
            if line.strip().startswith(name + ":"):
                fields = line.split(":", 1)[1].split()
                return int(fields[8])  # transmitted bytes
    raise RuntimeError(f"no interface {name} in /proc/net/dev")


def worker(args):
    import numpy as np
    import torch
    import torch.distributed as dist
    from sklearn.datasets import load_digits
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as powersgd

    import qcomm.torch

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=args.rank, world_size=args.ranks,
                            timeout=datetime.timedelta(seconds=300))
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(2024))
    test, train = order[-297:], order[:-297]
    shard = train[args.rank::args.ranks]
    torch.manual_seed(7)
    model = torch.nn.Sequential(torch.nn.Linear(64, args.hidden), torch.nn.ReLU(),
                                torch.nn.Linear(args.hidden, args.hidden), torch.nn.ReLU(),
                                torch.nn.Linear(args.hidden, 10))
    method = args.method
    if method.startswith("powersgd"):
        # powerSGD_hook waits for its second allreduce inside the first one's callback, which runs
        # on one of gloo's two worker threads. Two buckets doing that at once block both threads
        # and the job hangs (torch 1.13, 4 ranks); more gloo threads instead let the nested
        # collectives of different buckets cross between ranks. One bucket (a first bucket as
        # large as DDP's 25 MB cap, a knob DDP documents) keeps PowerSGD correct and running.
        dist._DEFAULT_FIRST_BUCKET_BYTES = 25 * 1024 * 1024
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    if method == "fp16":
        ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif method.startswith("powersgd"):
        state = powersgd.PowerSGDState(process_group=None,
                                       matrix_approximation_rank=int(method.split("-")[1]),
                                       start_powerSGD_iter=2)
        ddp.register_comm_hook(state, powersgd.powerSGD_hook)
    elif method == "qcomm-4bit":
        qcomm.torch.register(ddp, bits=4)
    elif method == "qcomm-2bit-ef":
        qcomm.torch.register(ddp, bits=2, error_feedback=True)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(100 + args.rank)
    steps_per_epoch = len(shard) // args.batch
    dist.barrier()
    sent0, t0 = interface_bytes(args.interface), time.time()
    for _ in range(args.epochs):
        perm = shard[torch.randperm(len(shard), generator=g)]
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch:(s + 1) * args.batch]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(ddp(x[idx]), y[idx]).backward()
            optimizer.step()
    dist.barrier()
    elapsed, sent = time.time() - t0, interface_bytes(args.interface) - sent0
    steps = steps_per_epoch * args.epochs
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item() * 100
    if args.rank == 0:
        per_rank = sent / args.ranks if args.interface == "lo" else sent
        print(json.dumps({"method": method, "accuracy": accuracy,
                          "bytes_per_step": per_rank / steps,
                          "ms_per_step": elapsed / steps * 1e3, "steps": steps}), flush=True)
    dist.destroy_process_group()


def orchestrate(args):
    rows = []
    port = 29600
    for method in args.methods:
        port += 1
        procs = []
        for rank in range(args.ranks):
            env = dict(os.environ, MASTER_PORT=str(port), OMP_NUM_THREADS="1")
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--method", method,
                   "--rank", str(rank), "--ranks", str(args.ranks), "--epochs", str(args.epochs),
                   "--hidden", str(args.hidden), "--batch", str(args.batch)]
            if args.cluster:
                env["MASTER_ADDR"] = f"{args.subnet}.1"
                env["GLOO_SOCKET_IFNAME"] = "eth0"  # not the shared hostname (127.0.x.1)
                cmd = ["ip", "netns", "exec", f"{args.cluster}-h{rank}"] + cmd + ["--interface", "eth0"]
            else:
                env["MASTER_ADDR"] = "127.0.0.1"
                cmd += ["--interface", "lo"]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
        outputs = [p.communicate()[0] for p in procs]
        if any(p.returncode for p in procs):
            sys.exit(f"ddp_compare: {method} failed")
        row = json.loads(outputs[0].strip().splitlines()[-1])
        rows.append(row)
        print(f"  {method:14} accuracy {row['accuracy']:6.2f}%  {row['bytes_per_step'] / 1024:9.1f} KB/step"
              f"  {row['ms_per_step']:7.2f} ms/step", flush=True)
    where = f"emulated cluster '{args.cluster}'" if args.cluster else "this machine (loopback)"
    print(f"\n{args.ranks} ranks on {where}, MLP 64-{args.hidden}-{args.hidden}-10, "
          f"{args.epochs} epochs, batch {args.batch} per rank\n")
    print("| method | test accuracy | KB sent per step per rank | ms per step |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['method']} | {r['accuracy']:.2f}% | {r['bytes_per_step'] / 1024:.1f} | "
              f"{r['ms_per_step']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"where": where, "ranks": args.ranks, "rows": rows}, f, indent=2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--cluster", help="emulated cluster name (qcomm cluster up), as root")
    parser.add_argument("--subnet", default="10.231.77", help="the cluster's subnet")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--interface", default="lo", help=argparse.SUPPRESS)
    args = parser.parse_args()
    worker(args) if args.worker else orchestrate(args)


if __name__ == "__main__":
    main()
