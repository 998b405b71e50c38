"""Train the reference VAE on MNIST from NumPy arrays, then use it: reconstructions, samples,
per-image log-likelihoods and anomaly scores, save and load.

    pip install ./bindings/python
    python bindings/python/examples/mnist.py --epochs 10 [--subset N] [--threads T] [--run-dir DIR]

Reads the repository's MNIST files (data/mnist) into arrays, as any NumPy pipeline would hold
them (uint8, N x 28 x 28). Every training option of `vae-train train` is a keyword of
`vae.train`; the run directory it writes is read by every `vae-train` command.
"""

import argparse
import gzip
import tempfile
from pathlib import Path

import numpy as np
import vae

MNIST = Path(__file__).resolve().parents[3] / "data" / "mnist"


def read_idx(path):
    """An IDX file (MNIST's format) as a uint8 array."""
    b = gzip.open(path).read()
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)


def auroc(scores, positive):
    """The probability that a positive scores above a negative (ties count half)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for s in np.unique(scores):
        tie = scores == s
        ranks[tie] = ranks[tie].mean()
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--subset", type=int, default=None, help="train on the first N images")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--train-only", action="store_true", help="stop after training (for timing)")
    a = p.parse_args()

    x_train = read_idx(MNIST / "train-images-idx3-ubyte.gz")
    y_train = read_idx(MNIST / "train-labels-idx1-ubyte.gz")
    x_test = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")
    y_test = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")
    run_dir = a.run_dir or tempfile.mkdtemp(prefix="vae-mnist-")

    def report(m):
        print(
            f"epoch {m['epoch']:>2}  train -ELBO {m['train_neg_elbo']:8.2f}  test -ELBO {m['test_neg_elbo']:8.2f}"
            f"  {m['train_seconds']:6.2f} s  {m['img_per_s']:7.0f} img/s",
            flush=True,
        )

    # PyTorch's example VAE (784-400-20, ReLU, Bernoulli decoder, Adam 1e-3, batch 128): the
    # defaults. Ctrl-C stops after the batch with a checkpoint and raises vae.Interrupted;
    # vae.train(..., resume=run_dir) continues exactly.
    model = vae.train(
        x_train, x_test, y_train=y_train, y_test=y_test,
        epochs=a.epochs, subset=a.subset, threads=a.threads, run_dir=run_dir, on_epoch=report,
    )
    print(model)
    if a.train_only:
        return

    recon = model.reconstruct(x_test[:8])                  # 8 x 28 x 28, pixel probabilities
    mu, logvar = model.encode(x_test[:8])                   # 8 x 20 each
    digits = model.sample(16, seed=0)                       # 16 x 28 x 28
    print("reconstruction error of 8 test images:", float(np.abs(recon - x_test[:8] / 255).mean()))
    print("latent means:", mu.shape, "samples:", digits.shape)
    ll = model.log_likelihood(x_test[:100], k=500)          # per image, nats
    print(f"log p(x) of 100 test images (k = 500): {ll.mean():.2f} nats; ELBO {model.elbo(x_test[:100]).mean():.2f}")

    # Anomaly detection: a model that never saw a 2 scores the test 2s higher.
    no_twos = vae.train(
        x_train, x_test, y_train=y_train, y_test=y_test, exclude_label=2,
        epochs=min(a.epochs, 3), subset=a.subset, threads=a.threads, run_dir=Path(run_dir) / "no2",
    )
    scores = no_twos.score(x_test)                          # the negative ELBO, 10 draws
    print(f"AUROC for the unseen digit 2: {auroc(scores, y_test == 2):.3f}")

    model.save(Path(run_dir) / "copy")
    again = vae.load(Path(run_dir) / "copy")
    assert np.array_equal(again.reconstruct(x_test[:8]), recon)
    print(f"saved and reloaded; try `vae-train sample --run-dir {run_dir}`")


if __name__ == "__main__":
    main()
