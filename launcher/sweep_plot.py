"""Plots and the Markdown report of a qcomm sweep (Debian's matplotlib, no display needed)."""

import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def label(row):
    if row["algorithm"] == "mpi":
        return "MPI_Allreduce (uncompressed)"
    codec = row["codec"].replace("qsgd:", "")
    return f"{row['algorithm']} {codec}"


def write(rows, out, name, source):
    groups = defaultdict(list)
    for row in rows:
        groups[(row["link"], row["ranks"])].append(row)
    report = [f"# qcomm sweep: {name}", "", f"From `{source}`; every row is in results.csv and "
              "results.json. The uncompressed MPI_Allreduce is the baseline in every plot.", ""]
    for (link, ranks), group in groups.items():
        report += [f"## {ranks} ranks, link {link}", ""]
        for metric, ylabel in (("time_us", "time per allreduce (ms)"),
                               ("busbw_GBps", "bus bandwidth (GB/s)")):
            lines = defaultdict(list)
            for row in group:
                lines[label(row)].append((row["size"], row[metric]))
            fig, ax = plt.subplots(figsize=(7, 4.2))
            for key, points in sorted(lines.items(), key=lambda kv: (not kv[0].startswith("MPI"), kv[0])):
                points.sort()
                xs = [p[0] / (1 << 20) for p in points]
                ys = [p[1] / 1e3 if metric == "time_us" else p[1] for p in points]
                style = dict(color="black", linewidth=2.5) if key.startswith("MPI") else {}
                ax.plot(xs, ys, marker="o", label=key, **style)
            ax.set_xscale("log", base=2)
            if metric == "time_us":
                ax.set_yscale("log")
            ax.set_xlabel("size per rank (MB of float32)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{ranks} ranks, link {link}")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            png = f"{metric.split('_')[0]}-{link}-{ranks}ranks.png"
            fig.savefig(os.path.join(out, png), dpi=110)
            plt.close(fig)
            report += [f"![{ylabel}]({png})", ""]
        report += ["| size | algorithm | codec | time (ms) | busbw (GB/s) | speedup vs MPI | wire bytes | #wrong |",
                   "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        baseline = {r["size"]: r["time_us"] for r in group if r["algorithm"] == "mpi"}
        for row in sorted(group, key=lambda r: (r["size"], r["algorithm"] != "mpi", r["codec"])):
            speedup = baseline.get(row["size"], 0) / row["time_us"] if row["time_us"] else 0
            report.append(f"| {row['size']} | {row['algorithm']} | {row['codec']} | "
                          f"{row['time_us'] / 1e3:.2f} | {row['busbw_GBps']:.3f} | "
                          f"{speedup:.2f}x | {row['wire_bytes']:.0f} | {row['wrong']} |")
        report.append("")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(report))
