#!/usr/bin/env python3
"""Every codec side by side on the CPU: bits per value on the wire, MSE, mean absolute error and
encode/decode GB/s, for Gaussian data (1024 x 1024, like note 002) and for real gradients (an MLP
on the digits data set, the same 64-1024-1024-10 model as bench/ddp_compare.py, after a few SGD
steps). Stochastic rounding throughout (what the allreduce uses); QSGD included.

    PYTHONPATH=build/python /usr/bin/python3 bench/quantizer_table.py [--repeat 5]

Encode is values -> wire message, decode is wire message -> values, both in qcomm's C++ through
the module the PyTorch hook uses; GB/s counts the float32 input bytes once. Also prints note 002's
own non-linear 3-bit figure, computed the note's way (it has no qcomm codec).
"""

import argparse
import time

import numpy as np

import qcomm
from qcomm import _codec, _qcomm

CODECS = [
    "qsgd:bits=4,bucket=512,norm=max,layout=compact",
    "qsgd:bits=8,bucket=512,norm=max,layout=compact",
    "linear:bits=8,mode=sym,block=4096",
    "linear:bits=4,mode=asym,block=512",
    "linear:bits=3,mode=asym",
    "percentile:bits=8,mode=sym,p=99.9,block=4096",
    "dynamic:block=4096",
    "dynamic:block=1048576",
    "rowwise:bits=8,block=1024",
    "fp16",
    "bf16",
]


def gaussian():
    return np.random.default_rng(0).standard_normal(1024 * 1024).astype(np.float32)


def digits_gradient():
    import torch
    from sklearn.datasets import load_digits

    torch.manual_seed(7)
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    model = torch.nn.Sequential(torch.nn.Linear(64, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(21):
        idx = torch.arange(step * 64, step * 64 + 64) % len(x)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        if step < 20:
            opt.step()
    return torch.cat([p.grad.flatten() for p in model.parameters()]).numpy().copy()


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def row(name, x, spec, repeat):
    executor = _codec._shared_executor()
    message = _qcomm.encode_message_spec(x, spec, 1, 0, 0, 0, executor)
    out = np.empty_like(x)
    enc = best_of(lambda: _qcomm.encode_message_spec(x, spec, 1, 0, 0, 0, executor), repeat)
    dec = best_of(lambda: _qcomm.decode_mean(message, [message.size], out, -1, None, None,
                                             executor), repeat)
    _qcomm.decode_mean(message, [message.size], out, -1, None, None, executor)
    return (name, _qcomm.canonical_codec_spec(spec), message.size * 8 / x.size,
            qcomm.quantization_error(x, out, "mse"), qcomm.quantization_error(x, out, "mae"),
            x.nbytes / enc / 1e9, x.nbytes / dec / 1e9)


def note_002_nonlinear(x):
    """Note 002's non-linear 3-bit map, nearest value after absmax normalization, its way."""
    values = np.array([-1.0, -0.5, -0.25, -0.075, 0.075, 0.25, 0.5, 1.0])
    absmax = np.abs(x).max()
    normed = x / absmax
    mid = (values[:-1] + values[1:]) / 2
    idx = np.searchsorted(mid, normed)
    return np.abs(values[idx] * absmax - x).mean()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    inputs = [("gaussian 1024x1024", gaussian()), ("digits MLP gradient", digits_gradient())]
    print("| data | codec | bits/value on the wire | MSE | MAE | encode GB/s | decode GB/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, x in inputs:
        for spec in CODECS:
            r = row(name, x, spec, args.repeat)
            print(f"| {r[0]} | `{r[1]}` | {r[2]:.2f} | {r[3]:.3e} | {r[4]:.3e} | {r[5]:.2f} | "
                  f"{r[6]:.2f} |", flush=True)
    print(f"\nnote 002's non-linear 3-bit map (its own method, no qcomm codec), gaussian: "
          f"MAE {note_002_nonlinear(inputs[0][1]):.4f}")


if __name__ == "__main__":
    main()
