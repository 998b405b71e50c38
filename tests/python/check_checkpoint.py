"""Loads a vae-train checkpoint with the `safetensors` package and numpy alone, rebuilds the
encoder and decoder (every stochastic layer; dense or convolutional, the convolutions written
here from PyTorch's definitions of Conv2d and ConvTranspose2d) from the configuration in its
header, reconstructs the first test images, and compares them with what
`vae-train reconstruct --csv` wrote.

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


def conv2d(x, w, b, stride, pad):
    """PyTorch's Conv2d: x [N, C, H, W], w [O, C, kh, kw], in float64."""
    n, _, h, wd = x.shape
    _, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, w.shape[0], oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i: i + stride * oh: stride, j: j + stride * ow: stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j].astype(np.float64))
    return out + b[None, :, None, None]


def conv_transpose2d(x, w, b, stride, pad, out_pad):
    """PyTorch's ConvTranspose2d: x [N, C, H, W], w [C, O, kh, kw], in float64."""
    n, _, h, wd = x.shape
    _, o, kh, kw = w.shape
    full = np.zeros((n, o, (h - 1) * stride + kh + out_pad, (wd - 1) * stride + kw + out_pad))
    for i in range(kh):
        for j in range(kw):
            full[:, :, i: i + stride * h: stride, j: j + stride * wd: stride] += np.einsum(
                "nchw,co->nohw", x.astype(np.float64), w[:, :, i, j].astype(np.float64))
    oh, ow = (h - 1) * stride - 2 * pad + kh + out_pad, (wd - 1) * stride - 2 * pad + kw + out_pad
    return full[:, :, pad: pad + oh, pad: pad + ow] + b[None, :, None, None]


def conv_layers(config):
    """The convolutions of a conv model's configuration (None for a dense model)."""
    arch = config.get("arch", {"kind": "mlp"})
    return arch["layers"] if arch["kind"] == "conv" else None


def linear_of(t):
    def linear(x, name):  # PyTorch's nn.Linear: x W^T + b, W is [out, in]
        return x @ t[f"{name}.weight"].T + t[f"{name}.bias"]
    return linear


def encoder_trunk(t, config, x, act):
    """The first encoder's hidden layers on the rows x: convolutions (if any), then dense."""
    linear, layers, first = linear_of(t), conv_layers(config), 0
    h = x
    if layers is not None:
        s = config["shape"]
        h = h.reshape(len(h), s["channels"], s["height"], s["width"])
        for i, layer in enumerate(layers):
            h = act(conv2d(h, t[f"encoder.{i}.weight"], t[f"encoder.{i}.bias"], layer["stride"], layer["padding"]))
        h, first = h.reshape(len(h), -1), len(layers)
    for i in range(first, first + len(config["hidden"])):
        h = act(linear(h, f"encoder.{i}"))
    return h


def decoder_rows(t, config, z, act):
    """decoder.out's output (logits or means) of the first level's z, as rows: dense layers
    then, for a conv model, the transposed convolutions mirroring the encoder's, each back to
    the size its convolution read (the output padding that makes it so), and decoder.out."""
    linear, layers = linear_of(t), conv_layers(config)
    if layers is None:
        for i in range(len(config["hidden"])):
            z = act(linear(z, f"decoder.{i}"))
        return linear(z, "decoder.out")
    nd = len(config["hidden"])
    for i in range(nd):
        z = act(linear(z, f"decoder.{i}"))
    s = config["shape"]
    sizes = [(s["height"], s["width"])]
    for layer in layers:  # the size each convolution puts out
        k, st, p = layer["kernel"], layer["stride"], layer["padding"]
        sizes.append(tuple((v + 2 * p - k) // st + 1 for v in sizes[-1]))
    h = z.reshape(len(z), layers[-1]["channels"], *sizes[-1])
    for j, i in enumerate(reversed(range(len(layers)))):
        k, st, p = layers[i]["kernel"], layers[i]["stride"], layers[i]["padding"]
        got = (h.shape[2] - 1) * st - 2 * p + k
        out_pad = sizes[i][0] - got
        assert 0 <= out_pad < st and sizes[i][1] - ((h.shape[3] - 1) * st - 2 * p + k) == out_pad
        name = f"decoder.{nd + j}"
        h = act(conv_transpose2d(h, t[f"{name}.weight"], t[f"{name}.bias"], st, p, out_pad))
    k = layers[0]["kernel"]
    h = conv_transpose2d(h, t["decoder.out.weight"], t["decoder.out.bias"], 1, (k - 1) // 2, 0)
    return h.reshape(len(h), -1)


def main():
    run_dir, csv = sys.argv[1], sys.argv[2]
    data_dir = sys.argv[3] if len(sys.argv) > 3 else "data/mnist"
    with safe_open(f"{run_dir}/model.safetensors", framework="np") as f:
        config = json.loads(f.metadata()["vae.config"])
        table = json.loads(f.metadata()["data.table"]) if "data.table" in f.metadata() else None
        t = {k: f.get_tensor(k) for k in f.keys()}
    act = activation(config["activation"])
    linear = linear_of(t)

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
    h = encoder_trunk(t, config, x, act)
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
    out = decoder_rows(t, config, z, act)
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
