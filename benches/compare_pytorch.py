"""Trains the reference VAE (784-400-20, batch 128, Adam lr 1e-3, seed 1) with PyTorch and
with vae-train, one after the other on the same cores, and prints seconds per epoch for both,
their ratio, and the test loss after the last epoch. Not part of CI.

Usage: python3 benches/compare_pytorch.py [--threads 2] [--epochs 10] [--simd LEVEL] [--install]
  --simd      avx512, avx2 or scalar: force vae-train to this level (VAE_SIMD) and hold
              PyTorch to the same instruction set (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS,
              ONEDNN_MAX_CPU_ISA), as a user of a machine with only that level would see it.
              Default: both run as they come (the best level of this CPU).
  --install   create the virtual environment VENV (default /tmp/torch-venv) and install
              torch and numpy into it first (about 5 GiB, a few minutes).
Besides images/s it prints each side's effective GFLOP/s: the flops of the epoch's matrix
products (3.28 MFLOP per image for 784-400-20) over the training seconds."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--epochs", type=int, default=10)
ap.add_argument("--venv", default="/tmp/torch-venv")
ap.add_argument("--install", action="store_true")
ap.add_argument("--simd", choices=["avx512", "avx2", "scalar"])
args = ap.parse_args()
env = dict(os.environ)
if args.simd:
    env["VAE_SIMD"] = args.simd
    torch_isa = {"avx512": ("avx512", "AVX512", "AVX512_CORE"), "avx2": ("avx2", "AVX2", "AVX2"),
                 "scalar": ("default", "SSE4_2", "SSE41")}[args.simd]
    env["ATEN_CPU_CAPABILITY"], env["MKL_ENABLE_INSTRUCTIONS"], env["ONEDNN_MAX_CPU_ISA"] = torch_isa
# Flops of one image's matrix products: forward 2*in*out per layer, the same for the weight
# gradients, and for the input gradients but the first layer's.
layers = [(784, 400), (400, 20), (400, 20), (20, 400), (400, 784)]
fwd = sum(2 * i * o for i, o in layers)
FLOPS_PER_IMAGE = 3 * fwd - 2 * 784 * 400
python = os.path.join(args.venv, "bin", "python")

if args.install:
    subprocess.run([sys.executable, "-m", "venv", args.venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "torch", "numpy"], check=True)
if not os.path.exists(python):
    sys.exit(f"no Python at {python}: run with --install first")

subprocess.run(["cargo", "build", "--release", "-q", "-p", "vae-train"], cwd=root, check=True)


def run(cmd, pattern):
    """Runs cmd, echoing its output; returns (seconds, test loss) per epoch line."""
    rows = []
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        print("   ", line.rstrip())
        m = re.search(pattern, line)
        if m:
            rows.append((float(m.group("s")), float(m.group("test"))))
    if proc.wait() != 0:
        sys.exit(f"{cmd[0]} failed")
    return rows


torch_rows = run(
    [python, "benches/torch_vae.py", "--threads", str(args.threads), "--epochs", str(args.epochs)],
    r"epoch\s+\d+\s+(?P<s>[\d.]+) s.*test\s+(?P<test>[\d.]+)",
)
with tempfile.TemporaryDirectory() as tmp:
    ours = run(
        ["target/release/vae-train", "--threads", str(args.threads), "--epochs", str(args.epochs),
         "--run-dir", os.path.join(tmp, "run")],
        r"test -ELBO\s+(?P<test>[\d.]+).*?\s(?P<s>[\d.]+) s\s",
    )

t_torch = statistics.median(s for s, _ in torch_rows)
t_ours = statistics.median(s for s, _ in ours)
print()
level = args.simd or "native"
print(f"threads {args.threads}, SIMD {level}, {args.epochs} epochs, median seconds per epoch (training only):")
for name, t, rows in [("PyTorch", t_torch, torch_rows), ("vae-train", t_ours, ours)]:
    print(f"  {name:<9} {t:6.3f} s  {60000 / t:8.0f} img/s  {60000 * FLOPS_PER_IMAGE / t / 1e9:6.1f} GFLOP/s"
          f"  test loss after the last epoch {rows[-1][1]:.2f}")
print(f"  vae-train is {t_torch / t_ours:.2f}x as fast")
