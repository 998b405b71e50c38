"""Trains the reference VAE (784-400-20, batch 128, Adam lr 1e-3, seed 1) with PyTorch and
with vae-train, one after the other on the same cores, and prints seconds per epoch for both,
their ratio, and the test loss after the last epoch. Not part of CI.

Usage: python3 benches/compare_pytorch.py [--threads 2] [--epochs 10] [--install]
  --install   create the virtual environment VENV (default /tmp/torch-venv) and install
              torch and numpy into it first (about 5 GiB, a few minutes)."""
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
args = ap.parse_args()
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
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, text=True)
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
print(f"threads {args.threads}, {args.epochs} epochs, median seconds per epoch (training only):")
print(f"  PyTorch   {t_torch:6.3f} s  {60000 / t_torch:8.0f} img/s  test loss after the last epoch {torch_rows[-1][1]:.2f}")
print(f"  vae-train {t_ours:6.3f} s  {60000 / t_ours:8.0f} img/s  test loss after the last epoch {ours[-1][1]:.2f}")
print(f"  vae-train is {t_torch / t_ours:.2f}x as fast")
