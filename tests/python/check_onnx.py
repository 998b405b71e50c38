"""Checks a run's ONNX export (`vae-train export`): both files pass the ONNX checker (opset
13 or later, a symbolic batch dimension), and onnxruntime reproduces vae-train: the decoder of
the encoder's top mean equals `vae-train reconstruct --csv`, and every level's mean and
log-variance equal the encoder rebuilt with numpy from model.safetensors (check_checkpoint.py's
arithmetic, itself checked against vae-train). Also runs one image, to use a second batch size.

Usage: python check_onnx.py RUN_DIR RECONSTRUCTIONS_CSV [DATA_DIR]
Exits non-zero if any value differs by more than 1e-5 (relative to max(1, |value|))."""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(__file__))
from check_checkpoint import activation, encoder_trunk, idx_images  # noqa: E402

TOLERANCE = 1e-5


def worst(a, b):
    return float((np.abs(a - b) / np.maximum(1.0, np.abs(b))).max())


def main():
    run_dir, csv = sys.argv[1], sys.argv[2]
    data_dir = sys.argv[3] if len(sys.argv) > 3 else "data/mnist"
    models = {}
    for name in ("encoder", "decoder"):
        path = f"{run_dir}/{name}.onnx"
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
        opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        if opset < 13:
            raise SystemExit(f"{path}: opset {opset}")
        batch = m.graph.input[0].type.tensor_type.shape.dim[0]
        if not batch.dim_param:
            raise SystemExit(f"{path}: the batch dimension is not symbolic")
        models[name] = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    with safe_open(f"{run_dir}/model.safetensors", framework="np") as f:
        config = json.loads(f.metadata()["vae.config"])
        t = {k: f.get_tensor(k) for k in f.keys()}
    act = activation(config["activation"])

    def linear(x, name):
        return x @ t[f"{name}.weight"].T + t[f"{name}.bias"]

    want = np.loadtxt(csv, delimiter=",", dtype=np.float32, ndmin=2)
    x = idx_images(f"{data_dir}/t10k-images-idx3-ubyte.gz")[: len(want)]
    enc = models["encoder"]
    names = [o.name for o in enc.get_outputs()]
    got = dict(zip(names, enc.run(None, {"x": x})))
    # The numpy encoder, level by level, each upper level on the mean below.
    levels = [("encoder", len(config["hidden"]))] + [
        (f"encoder{i}", len(layer["hidden"])) for i, layer in enumerate(config.get("upper", []), start=2)
    ]
    h, errs = x, []
    for level, (prefix, n) in enumerate(levels, start=1):
        if level == 1:
            h = encoder_trunk(t, config, h, act)
        else:
            for i in range(n):
                h = act(linear(h, f"{prefix}.{i}"))
        mu, lv = linear(h, f"{prefix}.mu"), linear(h, f"{prefix}.logvar")
        errs += [worst(got[f"mu{level}"], mu), worst(got[f"logvar{level}"], lv)]
        h = mu
    top = got[f"mu{len(levels)}"]
    dec = models["decoder"]
    mean = dec.run(None, {dec.get_inputs()[0].name: top})[0]
    err_recon = worst(mean, want)
    one = dec.run(None, {dec.get_inputs()[0].name: top[:1]})[0]
    err_one = worst(one, mean[:1])
    print(
        f"ONNX ({len(levels)} stochastic layer(s)): checker passes; onnxruntime's encoder vs numpy {max(errs):.2e}, "
        f"decoder(encoder) vs vae-train reconstruct {err_recon:.2e}, batch of 1 vs {len(want)} {err_one:.2e}"
    )
    if not max(errs + [err_recon, err_one]) <= TOLERANCE:
        raise SystemExit("mismatch")


if __name__ == "__main__":
    main()
