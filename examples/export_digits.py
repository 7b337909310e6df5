#!/usr/bin/env python3
"""Exports scikit-learn's digits data set (1797 8x8 images, shipped with Debian's python3-sklearn)
for the C++ example: little-endian int32 n, int32 d, float32 x[n*d] (pixels / 16), int32 y[n]."""

import struct
import sys

import numpy as np
from sklearn.datasets import load_digits


def main(path):
    digits = load_digits()
    x = (digits.data / 16.0).astype("<f4")
    y = digits.target.astype("<i4")
    with open(path, "wb") as f:
        f.write(struct.pack("<ii", *x.shape))
        f.write(x.tobytes())
        f.write(y.tobytes())


if __name__ == "__main__":
    main(sys.argv[1])
