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


def mlp_layers(torch, hidden, layers):
    """64 inputs, `layers` hidden layers of `hidden` units with ReLU, 10 outputs."""
    out = [torch.nn.Linear(64, hidden), torch.nn.ReLU()]
    for _ in range(layers - 1):
        out += [torch.nn.Linear(hidden, hidden), torch.nn.ReLU()]
    return out + [torch.nn.Linear(hidden, 10)]


def model_name(args):
    return "MLP 64-" + "-".join([str(args.hidden)] * args.layers) + "-10"


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
    model = torch.nn.Sequential(*mlp_layers(torch, args.hidden, args.layers))
    method = args.method
    if method.startswith("powersgd"):
        # powerSGD_hook waits for its second allreduce inside the first one's callback, which runs
        # on one of gloo's two worker threads. Two buckets doing that at once block both threads
        # and the job hangs (torch 1.13, 4 ranks); more gloo threads instead let the nested
        # collectives of different buckets cross between ranks. One bucket (a first bucket and
        # a cap as large as the model) keeps PowerSGD correct and running.
        whole = sum(p.numel() * p.element_size() for p in model.parameters())
        dist._DEFAULT_FIRST_BUCKET_BYTES = whole
        cap = {"bucket_cap_mb": whole / 2**20 + 1}
    else:
        cap = {}
    ddp = torch.nn.parallel.DistributedDataParallel(model, **cap)
    events = [] if args.timeline_out and args.rank == 0 else None
    hook_state, hook = None, None
    if method == "fp16":
        hook = default_hooks.fp16_compress_hook
    elif method.startswith("powersgd"):
        hook_state = powersgd.PowerSGDState(process_group=None,
                                            matrix_approximation_rank=int(method.split("-")[1]),
                                            start_powerSGD_iter=2)
        hook = powersgd.powerSGD_hook
    elif method == "qcomm-4bit":
        qstate = qcomm.torch.register(ddp, bits=4, algorithm=args.qcomm_algorithm,
                                      timeline=events is not None)
    elif method == "qcomm-2bit-ef":
        qstate = qcomm.torch.register(ddp, bits=2, error_feedback=True,
                                      algorithm=args.qcomm_algorithm,
                                      timeline=events is not None)
    if hook is not None:
        ddp.register_comm_hook(hook_state, hook if events is None else timed(hook, events))
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(100 + args.rank)
    steps_per_epoch = len(shard) // args.batch
    dist.barrier()
    sent0, t0 = interface_bytes(args.interface), time.time()
    step_ms, boundaries = [], []
    for _ in range(args.epochs):
        perm = shard[torch.randperm(len(shard), generator=g)]
        for s in range(steps_per_epoch):
            start = time.perf_counter()
            idx = perm[s * args.batch:(s + 1) * args.batch]
            optimizer.zero_grad()
            begin = time.monotonic()
            torch.nn.functional.cross_entropy(ddp(x[idx]), y[idx]).backward()
            backward = time.monotonic()
            optimizer.step()
            step_ms.append((time.perf_counter() - start) * 1e3)
            if events is not None:
                boundaries.append((begin, backward, time.monotonic()))
    dist.barrier()
    elapsed, sent = time.time() - t0, interface_bytes(args.interface) - sent0
    steps = steps_per_epoch * args.epochs
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item() * 100
    if args.rank == 0:
        per_rank = sent / args.ranks if args.interface == "lo" else sent
        print(json.dumps({"method": method, "accuracy": accuracy,
                          "bytes_per_step": per_rank / steps,
                          "ms_per_step": elapsed / steps * 1e3,
                          "median_ms": float(np.median(step_ms)), "steps": steps}), flush=True)
    if events is not None and method != "plain":  # plain runs DDP's own allreduce, untimed
        if method.startswith("qcomm"):
            events = qstate.timeline
        with open(os.path.join(args.timeline_out, method + ".json"), "w") as f:
            json.dump({"method": method, "steps": boundaries, "events": events}, f)
    dist.destroy_process_group()


def timed(hook, events):
    """`hook`, recording when each bucket was ready and when its exchange ended."""
    step = [0]

    def wrapper(state, bucket):
        event = dict(step=step[0], bucket=bucket.index(), numel=bucket.buffer().numel(),
                     path="torch", ready=time.monotonic())
        events.append(event)
        if bucket.is_last():
            step[0] += 1

        def done(f):
            event["end"] = time.monotonic()
            return f.value()
        return hook(state, bucket).then(done)
    return wrapper


def draw_timeline(folder, methods, png, title):
    """One panel per method: the step of median length; per bucket, a thin line from ready to
    the end of its exchange and a bar where it ran on qcomm's engine; backward's return marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = []
    for method in methods:
        path = os.path.join(folder, method + ".json")
        if os.path.exists(path):
            with open(path) as f:
                runs.append(json.load(f))
    if not runs:
        return
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 1.2 + 1.3 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs):
        steps = run["steps"][3:] or run["steps"]  # past start_iter and DDP's bucket rebuild
        lengths = sorted(range(len(steps)), key=lambda i: steps[i][2] - steps[i][0])
        i = lengths[len(lengths) // 2]
        begin, backward, end = steps[i]
        number = run["steps"].index(steps[i])
        mine = [e for e in run["events"] if e["step"] == number and "end" in e]
        for row, e in enumerate(sorted(mine, key=lambda e: e["ready"])):
            ms = lambda t: (t - begin) * 1e3  # noqa: E731
            ax.plot([ms(e["ready"]), ms(e["end"])], [row, row], color="0.6", lw=1)
            ax.plot([ms(e["ready"])], [row], "k|", ms=8)
            if "start" in e:
                ax.barh(row, ms(e["end"]) - ms(e["start"]), left=ms(e["start"]), height=0.5,
                        color="tab:blue")
            else:
                ax.barh(row, 1, left=ms(e["end"]) - 1, height=0.5, color="tab:orange")
            ax.text(ms(e["end"]) + 2, row, f"bucket {e['bucket']}: {e['numel'] * 4 / 1e6:.1f} MB",
                    va="center", fontsize=7)
        ax.axvline((backward - begin) * 1e3, color="tab:red", ls="--", lw=1)
        ax.axvline((end - begin) * 1e3, color="k", lw=1)
        ax.set_yticks([])
        ax.set_title(f"{run['method']}: step {number}, {(end - begin) * 1e3:.0f} ms "
                     f"(red: backward returned, black: optimizer step done)", fontsize=9)
        ax.set_xlim(left=0)
    axes[-1, 0].set_xlabel("ms since the step's forward began (rank 0); | bucket ready, "
                           "bar: exchange on qcomm's engine")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"timeline: {png}")


def orchestrate(args):
    rows = []
    port = 29600
    timelines = None
    if args.timeline:
        import tempfile
        timelines = tempfile.mkdtemp(prefix="ddp_timeline.")
        os.chmod(timelines, 0o777)
    for method in args.methods:
        port += 1
        procs = []
        for rank in range(args.ranks):
            env = dict(os.environ, MASTER_PORT=str(port), OMP_NUM_THREADS="1")
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--method", method,
                   "--rank", str(rank), "--ranks", str(args.ranks), "--epochs", str(args.epochs),
                   "--hidden", str(args.hidden), "--layers", str(args.layers),
                   "--batch", str(args.batch), "--qcomm-algorithm", args.qcomm_algorithm]
            if args.timeline:
                cmd += ["--timeline-out", timelines]
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
              f"  {row['ms_per_step']:7.2f} ms/step  median {row['median_ms']:7.2f} ms", flush=True)
    where = f"emulated cluster '{args.cluster}'" if args.cluster else "this machine (loopback)"
    print(f"\n{args.ranks} ranks on {where}, {model_name(args)}, "
          f"{args.epochs} epochs, batch {args.batch} per rank, qcomm algorithm "
          f"{args.qcomm_algorithm}\n")
    plain = next((r["median_ms"] for r in rows if r["method"] == "plain"), None)
    print("| method | test accuracy | KB sent per step per rank | ms per step (mean) | median | median / plain |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ratio = f"{r['median_ms'] / plain:.2f}" if plain else ""
        print(f"| {r['method']} | {r['accuracy']:.2f}% | {r['bytes_per_step'] / 1024:.1f} | "
              f"{r['ms_per_step']:.2f} | {r['median_ms']:.2f} | {ratio} |")
    if args.timeline:
        draw_timeline(timelines, args.methods, args.timeline,
                      f"{args.ranks} ranks on {where}, {model_name(args)}, batch {args.batch}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"where": where, "ranks": args.ranks, "rows": rows}, f, indent=2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=2, help="hidden layers")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--cluster", help="emulated cluster name (qcomm cluster up), as root")
    parser.add_argument("--subnet", default="10.231.77", help="the cluster's subnet")
    parser.add_argument("--qcomm-algorithm", default="auto",
                        choices=["auto", "allgather", "sra", "hierarchical"],
                        help="the qcomm rows' algorithm (auto: chosen from measured speeds)")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--timeline", metavar="PNG",
                        help="draw one step of each method (rank 0's buckets) into PNG")
    parser.add_argument("--timeline-out", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--interface", default="lo", help=argparse.SUPPRESS)
    args = parser.parse_args()
    worker(args) if args.worker else orchestrate(args)


if __name__ == "__main__":
    main()
