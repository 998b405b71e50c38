"""The Keras example's convolutional VAE (keras.io/examples/generative/vae) in PyTorch, the model
`vae-train --arch conv:32k3s2,64k3s2 --hidden 16 --latent 2` trains, with the same parameter
names and layouts (so its weights load into vae-train):
  encoder.0 Conv2d(1, 32, 3, stride 2, padding 1) + ReLU   28x28 -> 14x14
  encoder.1 Conv2d(32, 64, 3, stride 2, padding 1) + ReLU  14x14 -> 7x7
  encoder.2 Linear(3136, 16) + ReLU, encoder.mu / encoder.logvar Linear(16, 2)
  decoder.0 Linear(2, 3136) + ReLU, reshaped to 64 x 7 x 7
  decoder.1 ConvTranspose2d(64, 64, 3, stride 2, padding 1, output_padding 1) + ReLU  -> 14x14
  decoder.2 ConvTranspose2d(64, 32, 3, stride 2, padding 1, output_padding 1) + ReLU  -> 28x28
  decoder.out ConvTranspose2d(32, 1, 3, padding 1): Bernoulli logits
Loss: binary cross-entropy summed over pixels on grey-level targets plus the analytic KL, per
image (Keras' example), Adam lr 1e-3, batch 128, z sampled at test time.

Usage: python torch_keras_conv.py --threads 2 --epochs 1 [--max-batches M] [--data DIR]
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
ap.add_argument("--epochs", type=int, default=1)
ap.add_argument("--batch-size", type=int, default=128)
ap.add_argument("--latent", type=int, default=2)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--max-batches", type=int, help="train each epoch on the first M batches only")
ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "mnist"))
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)


def images(name):
    raw = gzip.decompress(open(os.path.join(args.data, name), "rb").read())
    n = int.from_bytes(raw[4:8], "big")
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, 28, 28).astype(np.float32) / 255
    return torch.from_numpy(x)


train_x, test_x = images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")


class KerasConvVae(nn.Module):
    def __init__(self, latent):
        super().__init__()
        self.encoder = nn.ModuleDict({
            "0": nn.Conv2d(1, 32, 3, stride=2, padding=1),
            "1": nn.Conv2d(32, 64, 3, stride=2, padding=1),
            "2": nn.Linear(64 * 7 * 7, 16),
            "mu": nn.Linear(16, latent),
            "logvar": nn.Linear(16, latent),
        })
        self.decoder = nn.ModuleDict({
            "0": nn.Linear(latent, 64 * 7 * 7),
            "1": nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1),
            "2": nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1),
            "out": nn.ConvTranspose2d(32, 1, 3, padding=1),
        })

    def encode(self, x):
        e = self.encoder
        h = F.relu(e["1"](F.relu(e["0"](x))))
        h = F.relu(e["2"](h.flatten(1)))
        return e["mu"](h), e["logvar"](h)

    def decode(self, z):
        d = self.decoder
        h = F.relu(d["0"](z)).view(-1, 64, 7, 7)
        return d["out"](F.relu(d["2"](F.relu(d["1"](h)))))

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


def loss(logits, x, mu, logvar):
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") + kl


model = KerasConvVae(args.latent)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(1, args.epochs + 1):
    model.train()
    order = torch.randperm(len(train_x))
    if args.max_batches is not None:
        order = order[: args.max_batches * args.batch_size]
    total = 0.0
    start = time.perf_counter()
    for i in range(0, len(order), args.batch_size):
        x = train_x[order[i: i + args.batch_size]]
        opt.zero_grad()
        logits, mu, logvar = model(x)
        batch_loss = loss(logits, x, mu, logvar)
        (batch_loss / len(x)).backward()
        opt.step()
        total += batch_loss.item()
    seconds = time.perf_counter() - start
    model.eval()
    test = 0.0
    with torch.no_grad():
        for i in range(0, len(test_x), 1000):
            x = test_x[i: i + 1000]
            logits, mu, logvar = model(x)
            test += loss(logits, x, mu, logvar).item()
    print(f"epoch {epoch:2d} {seconds:7.3f} s {len(order) / seconds:8.0f} img/s "
          f"train {total / len(order):8.2f} test {test / len(test_x):8.2f}", flush=True)
