"""Fixtures: MNIST subsets read from the repository's IDX files, the vae-train binary."""

import gzip
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
MNIST = REPO / "data" / "mnist"


def read_idx(path):
    b = gzip.open(path).read()
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)


@pytest.fixture(scope="session")
def mnist():
    """(x_train[:2000], y_train[:2000], x_test[:500], y_test[:500]) as uint8."""
    xtr = read_idx(MNIST / "train-images-idx3-ubyte.gz")[:2000].copy()
    ytr = read_idx(MNIST / "train-labels-idx1-ubyte.gz")[:2000].copy()
    xte = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")[:500].copy()
    yte = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")[:500].copy()
    return xtr, ytr, xte, yte


@pytest.fixture(scope="session")
def cli():
    """A function running vae-train with arguments, returning the completed process (the
    binary built if it is not there yet)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = target / "release" / "vae-train"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "vae-train"], cwd=REPO, check=True)

    def run(*args, check=True):
        p = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"vae-train {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
        return p

    return run


SMALL = dict(hidden=(64,), latent=8, epochs=1, threads=2)


def read_csv(path):
    return np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
