"""Trains one model with PyTorch and with vae-train, one after the other on the same cores, and
prints the median seconds per epoch of both, their images/s and GFLOP/s, their ratio, and the
loss after the last epoch. Not part of CI.

Usage: python3 benches/compare_pytorch.py [--model reference|iwae2|keras-conv|conv64] [--threads 2] [--epochs E]
                                          [--subset N | --max-batches M] [--batch-size B] [--simd LEVEL]
                                          [--install]
  --model     reference (default): the reference VAE (784-400-20, ReLU, batch 128, Adam lr 1e-3,
              seed 1), benches/torch_vae.py against vae-train with its default flags; the loss
              shown is the test -ELBO.
              iwae2: the IWAE paper's two-level model (tanh, q(z1|x) 784-200-200-(100, 100),
              q(z2|z1) 100-100-100-(50, 50), p(z1|z2) 50-100-100-(100, 100), p(x|z1)
              100-200-200-784, dynamic binarization, batch 100, IWAE bound with K = 5 samples and
              the DReG encoder gradient, Adam lr 1e-3 eps 1e-4), benches/torch_iwae.py against
              vae-train with the same flags (IWAE_FLAGS below); the loss shown is the training
              -IWAE(k=5).
              keras-conv: the Keras example's convolutional VAE (Conv2D 32 and 64, 3x3, stride 2,
              Dense 16, a 2-d latent, Dense 7x7x64 and three transposed convolutions; ReLU,
              Bernoulli, batch 128, Adam lr 1e-3), benches/torch_keras_conv.py against
              vae-train --arch conv:32k3s2,64k3s2 --hidden 16 --latent 2; the loss shown is the
              test -ELBO.
              conv64: the 64x64 colour conv VAE (PyTorch-VAE's VanillaVAE trunk without
              BatchNorm: five 3x3 stride-2 convolutions of 32-512 channels, Dense 400, a
              128-d latent, five transposed convolutions and a 3-channel output; LeakyReLU,
              Gaussian, batch 128, Adam lr 1e-3), benches/torch_conv64.py against vae-train
              with CONV64_FLAGS, both on the same synthetic images (random 64x64 RGB, an .npz
              this script writes: 1,280 training and 256 test images); the loss shown is the
              test -ELBO.
  --epochs    epochs of each side [default: 10 for reference, 1 for the others].
  --subset    iwae2 and keras-conv: train each epoch on N images (a multiple of the batch size):
              vae-train --subset N, the PyTorch script's --max-batches N/batch, so that an epoch
              is short.
  --max-batches  iwae2 and keras-conv: the same as --subset batch*M.
  --batch-size  reference and iwae2: both sides train with batches of B images instead of 128
              (reference) or 100 (iwae2), e.g. 20 as in the IWAE paper.
  --simd      avx512, avx2 or scalar: force vae-train to this level (VAE_SIMD) and hold
              PyTorch to the same instruction set (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS,
              ONEDNN_MAX_CPU_ISA), as a user of a machine with only that level would see it.
              Default: both run as they come (the best level of this CPU).
  --install   create the virtual environment VENV (default /tmp/torch-venv) and install
              torch and numpy into it first (about 5 GiB, a few minutes).
Besides images/s it prints each side's effective GFLOP/s: the flops of the epoch's matrix
products (3.28 MFLOP per image for the reference 784-400-20, 10.16 MFLOP for iwae2 with K = 5;
39.85 MFLOP for keras-conv, 654.7 MFLOP for conv64; see flops_per_image, KERAS_CONV_FLOPS and
CONV64_FLOPS) over the training seconds."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--model", choices=["reference", "iwae2", "keras-conv", "conv64"], default="reference")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--epochs", type=int, help="default: 10 for reference, 1 for the others")
short = ap.add_mutually_exclusive_group()
short.add_argument("--subset", type=int, help="iwae2, keras-conv: train on N images per epoch (a multiple of the batch)")
short.add_argument("--max-batches", type=int, help="iwae2, keras-conv: train on M batches per epoch")
ap.add_argument("--batch-size", type=int, help="reference, iwae2: the batch size of both sides")
ap.add_argument("--venv", default="/tmp/torch-venv")
ap.add_argument("--install", action="store_true")
ap.add_argument("--simd", choices=["avx512", "avx2", "scalar"])
args = ap.parse_args()
if args.epochs is None:
    args.epochs = 10 if args.model == "reference" else 1
if args.epochs < 1 or args.threads < 1:
    ap.error("--epochs and --threads must be at least 1")

TRAIN_IMAGES = 60000
IWAE_K = 5  # --samples of vae-train, --k of torch_iwae.py
if args.batch_size is not None:
    if args.model not in ("reference", "iwae2"):
        ap.error("--batch-size applies to --model reference and iwae2 only")
    if args.batch_size < 1:
        ap.error("--batch-size must be at least 1")
IWAE_BATCH = args.batch_size if args.model == "iwae2" and args.batch_size else 100
KERAS_BATCH = 128
KERAS_FLAGS = ["--arch", "conv:32k3s2,64k3s2", "--hidden", "16", "--latent", "2"]
CONV64_FLAGS = ["--arch", "conv:32k3s2,64k3s2,128k3s2,256k3s2,512k3s2", "--latent", "128", "--activation",
                "leaky-relu", "--likelihood", "gaussian"]
CONV64_TRAIN, CONV64_TEST = 1280, 256
IWAE_FLAGS = ["--binarize", "--hidden", "200,200", "--latent", "100,50", "--upper-hidden", "100,100",
              "--activation", "tanh", "--batch-size", str(IWAE_BATCH), "--objective", "iwae",
              "--samples", str(IWAE_K), "--dreg", "--lr", "1e-3", "--adam-eps", "1e-4"]

BATCH = KERAS_BATCH if args.model == "keras-conv" else IWAE_BATCH
if args.max_batches is not None:
    args.subset = args.max_batches * BATCH
if args.subset is not None:
    if args.model in ("reference", "conv64"):
        ap.error("--subset and --max-batches apply to --model iwae2 and keras-conv only")
    if args.subset < BATCH or args.subset % BATCH:
        ap.error(f"--subset must be a positive multiple of the batch size {BATCH}")
    args.subset = min(args.subset, TRAIN_IMAGES)
images = args.subset or TRAIN_IMAGES  # training images per epoch, on both sides
if args.model == "conv64":
    images = CONV64_TRAIN

env = dict(os.environ)
if args.simd:
    env["VAE_SIMD"] = args.simd
    torch_isa = {"avx512": ("avx512", "AVX512", "AVX512_CORE"), "avx2": ("avx2", "AVX2", "AVX2"),
                 "scalar": ("default", "SSE4_2", "SSE41")}[args.simd]
    env["ATEN_CPU_CAPABILITY"], env["MKL_ENABLE_INSTRUCTIONS"], env["ONEDNN_MAX_CPU_ISA"] = torch_isa


def flops_per_image(layers):
    """Flops of one image's matrix products in a training step. `layers` lists the products as
    (in, out, rows per image, weight gradient?, input gradient?): forward 2*in*out per row, the
    same again for the weight gradient (if the weights are live) and for the input gradient (if
    the input needs one: not for the first layer on the data)."""
    return sum(2 * i * o * rows * (1 + wg + ig) for i, o, rows, wg, ig in layers)


def iwae2_layers(k):
    """The products vae-train records for the two-level IWAE with K = k and DReG
    (crates/model/src/bound.rs, sampled_graph; the mu and logvar heads are two Linear layers
    each, which multiply as much as one layer of twice the width):
      q(z1|x) 784-200-200-(100, 100): once per image, on the B rows; its mu and logvar are then
        repeated K times (repeat_rows), so it is not run K times. No input gradient for the
        first layer (x is a constant); its other products get one, through z1.
      q(z2|z1) 100-100-100-(50, 50), live: on the B*K rows of z1 (the sampling path), with every
        gradient (z1 needs one).
      q(z2|z1) again with its parameters detached (DReG's frozen-parameter density log q(z2|z1),
        forward_detached on the z1 the densities see): B*K rows, forward and input gradients,
        no weight gradients.
      p(z1|z2) 50-100-100-(100, 100) and p(x|z1) 100-200-200-784: on the B*K rows, every
        gradient (their inputs are the z's, which need one).
    benches/torch_iwae.py does the same products: q(x) on the B images then repeat_interleave,
    and the frozen upper q through functional_call with detached parameters."""
    q1 = [(784, 200, 1, 1, 0), (200, 200, 1, 1, 1), (200, 100, 1, 1, 1), (200, 100, 1, 1, 1)]
    q2 = [(100, 100, k, 1, 1), (100, 100, k, 1, 1), (100, 50, k, 1, 1), (100, 50, k, 1, 1)]
    q2_frozen = [(i, o, rows, 0, ig) for i, o, rows, _, ig in q2]
    p1 = [(50, 100, k, 1, 1), (100, 100, k, 1, 1), (100, 100, k, 1, 1), (100, 100, k, 1, 1)]
    dec = [(100, 200, k, 1, 1), (200, 200, k, 1, 1), (200, 784, k, 1, 1)]
    return q1 + q2 + q2_frozen + p1 + dec


# The reference: encoder 784-400 (on the data), heads 400-20 and 400-20, decoder 20-400-784;
# 3 * forward - 2*784*400 = 3.28 MFLOP.
REFERENCE_LAYERS = [(784, 400, 1, 1, 0), (400, 20, 1, 1, 1), (400, 20, 1, 1, 1), (20, 400, 1, 1, 1),
                    (400, 784, 1, 1, 1)]
# The Keras example's model (multiply-adds per image, as benches/epoch.rs counts them): the
# convolutions' weight elements times their window positions, each layer's forward, weight
# gradient and (but the first) input gradient.
KERAS_CONV_MACS = [(32 * 9 * 14 * 14, False), (64 * 32 * 9 * 7 * 7, True), (3136 * 16 + 2 * 16 * 2, True),
                   (2 * 3136, True), (64 * 64 * 9 * 7 * 7, True), (64 * 32 * 9 * 14 * 14, True),
                   (32 * 9 * 28 * 28, True)]
KERAS_CONV_FLOPS = sum(2 * m * (2 + xg) for m, xg in KERAS_CONV_MACS)
# conv64, counted the same way: the five convolutions (weight elements times output pixels),
# the dense layers 2048-400, 400-(128, 128) and 128-2048, the six transposed convolutions (at
# their input pixels); no input gradient for the first layer.
CONV64_MACS = ([(ci * co * 9 * s * s, i > 0) for i, (ci, co, s) in
                enumerate([(3, 32, 32), (32, 64, 16), (64, 128, 8), (128, 256, 4), (256, 512, 2)])]
               + [(2048 * 400, True), (2 * 400 * 128, True), (128 * 2048, True)]
               + [(ci * co * 9 * s * s, True) for ci, co, s in
                  [(512, 512, 2), (512, 256, 4), (256, 128, 8), (128, 64, 16), (64, 32, 32), (32, 3, 64)]])
CONV64_FLOPS = sum(2 * m * (2 + xg) for m, xg in CONV64_MACS)
FLOPS_PER_IMAGE = {"reference": flops_per_image(REFERENCE_LAYERS), "iwae2": flops_per_image(iwae2_layers(IWAE_K)),
                   "keras-conv": KERAS_CONV_FLOPS, "conv64": CONV64_FLOPS}[args.model]

python = os.path.join(args.venv, "bin", "python")
if args.install:
    subprocess.run([sys.executable, "-m", "venv", args.venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "torch", "numpy"], check=True)
if not os.path.exists(python):
    sys.exit(f"no Python at {python}: run with --install first")

subprocess.run(["cargo", "build", "--release", "-q", "-p", "vae-train"], cwd=root, check=True)


def run(cmd, pattern):
    """Runs cmd, echoing its output; returns (seconds, loss) per epoch line."""
    print("  ", " ".join(cmd), flush=True)
    rows = []
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        print("   ", line.rstrip(), flush=True)
        m = re.search(pattern, line)
        if m:
            rows.append((float(m.group("s")), float(m.group("loss"))))
    if proc.wait() != 0:
        sys.exit(f"{cmd[0]} failed")
    if len(rows) != args.epochs:
        sys.exit(f"{cmd[0]}: {len(rows)} epoch lines parsed, expected {args.epochs}")
    return rows


# Epoch lines: torch_vae.py    `epoch  1   2.870 s    20906 img/s train   164.29 test   126.91`
#              torch_iwae.py   `epoch  1  16.868 s     3557 img/s  train -IWAE(k=5)   100.00`
#              vae-train       `epoch  1/10  train -ELBO   165.09 (rec ..., KL ...)[  train -IWAE(k=5)
#                               ...]  test -ELBO   128.15 (rec ..., KL ...)    1.55 s    38773 img/s`
# (every side's seconds are those of the training batches alone).
TORCH_VAE_RE = r"^epoch\s+\d+\s+(?P<s>[\d.]+) s\s+\d+ img/s.*test\s+(?P<loss>-?[\d.]+)"
TORCH_IWAE_RE = r"^epoch\s+\d+\s+(?P<s>[\d.]+) s\s+\d+ img/s\s+train -IWAE\(k=\d+\)\s+(?P<loss>-?[\d.]+)"
OURS_ELBO_RE = r"^epoch\s+\d+/\d+.*test -ELBO\s+(?P<loss>-?[\d.]+).*?\s(?P<s>[\d.]+) s\s"
OURS_IWAE_RE = r"^epoch\s+\d+/\d+.*train -IWAE\(k=\d+\)\s+(?P<loss>-?[\d.]+).*?\s(?P<s>[\d.]+) s\s"

threads, epochs = ["--threads", str(args.threads)], ["--epochs", str(args.epochs)]
with tempfile.TemporaryDirectory() as tmp:
    ours_cmd = ["target/release/vae-train", *threads, *epochs, "--run-dir", os.path.join(tmp, "run")]
    if args.model == "reference":
        loss_name = "test -ELBO"
        batch = ["--batch-size", str(args.batch_size)] if args.batch_size else []
        torch_rows = run([python, "benches/torch_vae.py", *threads, *epochs, *batch], TORCH_VAE_RE)
        ours = run([*ours_cmd, *batch], OURS_ELBO_RE)
    elif args.model == "keras-conv":
        loss_name = "test -ELBO"
        short_torch = ["--max-batches", str(images // KERAS_BATCH)] if args.subset else []
        short_ours = ["--subset", str(images)] if args.subset else []
        torch_rows = run([python, "benches/torch_keras_conv.py", *threads, *epochs, *short_torch], TORCH_VAE_RE)
        ours = run([*ours_cmd[:1], *KERAS_FLAGS, *ours_cmd[1:], *short_ours], OURS_ELBO_RE)
    elif args.model == "conv64":
        loss_name = "test -ELBO"
        data = os.path.join(tmp, "conv64.npz")
        subprocess.run([python, "-c", f"import numpy as np; r = np.random.default_rng(0); np.savez({data!r}, "
                        f"x_train=r.integers(0, 256, ({CONV64_TRAIN}, 64, 64, 3), dtype=np.uint8), "
                        f"x_test=r.integers(0, 256, ({CONV64_TEST}, 64, 64, 3), dtype=np.uint8))"], check=True)
        torch_rows = run([python, "benches/torch_conv64.py", "--data", data, *threads, *epochs], TORCH_VAE_RE)
        ours = run([*ours_cmd[:1], "--data", data, *CONV64_FLAGS, *ours_cmd[1:]], OURS_ELBO_RE)
    else:
        loss_name = f"train -IWAE(k={IWAE_K})"
        short_torch = ["--max-batches", str(images // IWAE_BATCH)] if args.subset else []
        short_ours = ["--subset", str(images)] if args.subset else []
        torch_rows = run([python, "benches/torch_iwae.py", *threads, *epochs, "--k", str(IWAE_K),
                          "--batch", str(IWAE_BATCH),
                          *short_torch], TORCH_IWAE_RE)
        ours = run([*ours_cmd[:1], *IWAE_FLAGS, *ours_cmd[1:], *short_ours], OURS_IWAE_RE)

t_torch = statistics.median(s for s, _ in torch_rows)
t_ours = statistics.median(s for s, _ in ours)
print()
level = args.simd or "native"
batch = args.batch_size or {"reference": 128, "iwae2": IWAE_BATCH}.get(args.model, KERAS_BATCH)
print(f"model {args.model}, threads {args.threads}, SIMD {level}, batch {batch}, {args.epochs} epochs of {images} images, "
      f"{FLOPS_PER_IMAGE / 1e6:.2f} MFLOP per image; median seconds per epoch (training only):")
for name, t, rows in [("PyTorch", t_torch, torch_rows), ("vae-train", t_ours, ours)]:
    print(f"  {name:<9} {t:7.3f} s  {images / t:8.0f} img/s  {images * FLOPS_PER_IMAGE / t / 1e9:6.1f} GFLOP/s"
          f"  {loss_name} after the last epoch {rows[-1][1]:.2f}")
print(f"  vae-train is {t_torch / t_ours:.2f}x as fast")
