"""Loads a vae-train checkpoint with the `safetensors` package and numpy alone, rebuilds the
encoder and decoder (every stochastic layer) from the configuration in its header, reconstructs the first test images,
and compares them with what `vae-train reconstruct --csv` wrote.

Usage: python check_checkpoint.py RUN_DIR RECONSTRUCTIONS_CSV [DATA_DIR]
Exits non-zero if any pixel differs by more than 1e-5."""
import gzip
import json
import sys

import numpy as np
from safetensors import safe_open


def idx_images(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims[0], -1).astype(np.float32) / 255.0


def activation(spec):
    name, _, arg = spec.partition(":")
    if name == "relu":
        return lambda x: np.maximum(x, 0)
    if name == "leaky-relu":
        slope = float(arg or 0.01)
        return lambda x: np.where(x > 0, x, slope * x)
    if name == "sigmoid":
        return lambda x: 1 / (1 + np.exp(-x))
    if name == "tanh":
        return np.tanh
    raise SystemExit(f"unknown activation {spec}")


def main():
    run_dir, csv = sys.argv[1], sys.argv[2]
    data_dir = sys.argv[3] if len(sys.argv) > 3 else "data/mnist"
    with safe_open(f"{run_dir}/model.safetensors", framework="np") as f:
        config = json.loads(f.metadata()["vae.config"])
        table = json.loads(f.metadata()["data.table"]) if "data.table" in f.metadata() else None
        t = {k: f.get_tensor(k) for k in f.keys()}
    act = activation(config["activation"])

    def linear(x, name):  # PyTorch's nn.Linear: x W^T + b, W is [out, in]
        return x @ t[f"{name}.weight"].T + t[f"{name}.bias"]

    if table is not None:
        # A table: the third argument is the inputs (`reconstruct --inputs-csv`), in the
        # table's units; the model sees them standardised with the checkpoint's statistics.
        mean = np.array(table["standardizer"]["mean"])
        std = np.array(table["standardizer"]["std"])
        want = np.loadtxt(csv, delimiter=",", skiprows=1, ndmin=2)
        x = ((np.loadtxt(data_dir, delimiter=",", skiprows=1, ndmin=2) - mean) / std).astype(np.float32)
    elif data_dir.endswith(".npz"):
        want = np.loadtxt(csv, delimiter=",", dtype=np.float32, ndmin=2)
        # Keras' layout: x_test is N x H x W [x C]; the engine holds images channels first.
        x = np.load(data_dir)["x_test"][: len(want)]
        if x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        x = x.reshape(len(x), -1)
        x = x.astype(np.float32) / np.float32(255) if x.dtype == np.uint8 else x.astype(np.float32)
    else:
        want = np.loadtxt(csv, delimiter=",", dtype=np.float32, ndmin=2)
        x = idx_images(f"{data_dir}/t10k-images-idx3-ubyte.gz")[: len(want)]
    h = x
    for i in range(len(config["hidden"])):
        h = act(linear(h, f"encoder.{i}"))
    z = linear(h, "encoder.mu")  # reconstruct = decode(posterior mean)
    upper = config.get("upper", [])  # stochastic layers above the first, level 2 first
    for level, layer in enumerate(upper, start=2):
        for i in range(len(layer["hidden"])):
            z = act(linear(z, f"encoder{level}.{i}"))
        z = linear(z, f"encoder{level}.mu")
    for level, layer in reversed(list(enumerate(upper, start=2))):
        for i in range(len(layer["hidden"])):
            z = act(linear(z, f"decoder{level}.{i}"))
        z = linear(z, f"decoder{level}.mu")  # the mean of p(z_(l-1) | z_l)
    for i in range(len(config["hidden"])):
        z = act(linear(z, f"decoder.{i}"))
    out = linear(z, "decoder.out")
    if config["likelihood"]["kind"] == "bernoulli":
        out = 1 / (1 + np.exp(-out))
    if table is not None:
        out = out * std + mean  # back to the table's units
        err = float((np.abs(out - want) / np.maximum(1.0, np.abs(want))).max())
    else:
        err = float(np.abs(out - want).max())
    print(f"{len(want)} reconstructions, largest difference from vae-train: {err:.2e}")
    if not err <= 1e-5:
        raise SystemExit("mismatch")


if __name__ == "__main__":
    main()
