"""The PyTorch VAE that `vae-train` is measured against: pytorch/examples' MNIST VAE
(784-hidden-ReLU-latent, mirrored decoder, sigmoid output, BCE summed over pixels on
grey-level targets plus the analytic KL, Adam lr 1e-3), with z sampled at test time and the
loss reported per image, in nats.

Usage: python torch_vae.py --threads 2 --epochs 10 [--hidden 400] [--latent 20] [--data DIR]
Prints one line per epoch: epoch, training seconds, images/s, train loss, test loss."""
import argparse
import gzip
import os
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--epochs", type=int, default=10)
ap.add_argument("--batch-size", type=int, default=128)
ap.add_argument("--hidden", default="400")
ap.add_argument("--latent", type=int, default=20)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "mnist"))
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)


def images(name):
    raw = gzip.decompress(open(os.path.join(args.data, name), "rb").read())
    n = int.from_bytes(raw[4:8], "big")
    return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=16).reshape(n, 784).astype(np.float32) / 255)


train_x, test_x = images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")
hidden = [int(h) for h in args.hidden.split(",")]


def mlp(sizes):
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class Vae(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = mlp([784] + hidden)
        self.mu = nn.Linear(hidden[-1], args.latent)
        self.logvar = nn.Linear(hidden[-1], args.latent)
        self.decoder = mlp([args.latent] + hidden[::-1])
        self.out = nn.Linear(hidden[0], 784)

    def forward(self, x):
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.out(self.decoder(z))), mu, logvar


def loss(recon, x, mu, logvar):
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return F.binary_cross_entropy(recon, x, reduction="sum") + kl


model = Vae()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(1, args.epochs + 1):
    model.train()
    order = torch.randperm(len(train_x))
    total = 0.0
    start = time.perf_counter()
    for i in range(0, len(train_x), args.batch_size):
        x = train_x[order[i: i + args.batch_size]]
        opt.zero_grad()
        recon, mu, logvar = model(x)
        batch_loss = loss(recon, x, mu, logvar)
        batch_loss.backward()
        opt.step()
        total += batch_loss.item()
    seconds = time.perf_counter() - start
    model.eval()
    test = 0.0
    with torch.no_grad():
        for i in range(0, len(test_x), 1000):
            x = test_x[i: i + 1000]
            recon, mu, logvar = model(x)
            test += loss(recon, x, mu, logvar).item()
    print(f"epoch {epoch:2d} {seconds:7.3f} s {len(train_x) / seconds:8.0f} img/s "
          f"train {total / len(train_x):8.2f} test {test / len(test_x):8.2f}", flush=True)
