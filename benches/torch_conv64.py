"""The PyTorch twin of the 64x64 colour conv VAE that
`vae-train --arch conv:32k3s2,64k3s2,128k3s2,256k3s2,512k3s2 --latent 128 --activation leaky-relu
--likelihood gaussian` builds (PyTorch-VAE's VanillaVAE trunk without BatchNorm; 6,682,899
parameters, as vae-train's): trained on the images of an .npz (`x_train`, `x_test`: N x 64 x 64 x
3 uint8, scaled to [0, 1]), batch 128, Adam lr 1e-3, the Gaussian likelihood with unit variance.
Prints one line per epoch: `epoch E  S s  R img/s train L test T` (S: the training batches
alone). Used by benches/compare_pytorch.py --model conv64.

Usage: torch_conv64.py --data FILE.npz [--threads 2] [--epochs 1] [--batch-size 128]"""
import argparse
import math
import time

import numpy as np
import torch
from torch import nn

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--epochs", type=int, default=1)
ap.add_argument("--batch-size", type=int, default=128)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1)

npz = np.load(a.data)
to_tensor = lambda x: torch.from_numpy(x.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
x_train, x_test = to_tensor(npz["x_train"]), to_tensor(npz["x_test"])

act = lambda: nn.LeakyReLU(0.01)
ch = [3, 32, 64, 128, 256, 512]
enc = nn.Sequential(*[m for i in range(5) for m in (nn.Conv2d(ch[i], ch[i + 1], 3, 2, 1), act())],
                    nn.Flatten(), nn.Linear(2048, 400), act())
mu, lv = nn.Linear(400, 128), nn.Linear(400, 128)
dec_ch = [512, 512, 256, 128, 64, 32]
dec = nn.Sequential(nn.Linear(128, 2048), act(), nn.Unflatten(1, (512, 2, 2)),
                    *[m for i in range(5) for m in (nn.ConvTranspose2d(dec_ch[i], dec_ch[i + 1], 3, 2, 1,
                                                                       output_padding=1), act())],
                    nn.ConvTranspose2d(32, 3, 3, 1, 1))
params = [*enc.parameters(), *mu.parameters(), *lv.parameters(), *dec.parameters()]
opt = torch.optim.Adam(params, 1e-3)
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def loss_of(x):
    """The negative ELBO per image: Gaussian reconstruction (unit variance) plus the KL."""
    h = enc(x)
    m, l = mu(h), lv(h)
    z = m + torch.randn_like(m) * (0.5 * l).exp()
    y = dec(z)
    rec = (0.5 * (y - x) ** 2 + HALF_LOG_2PI).flatten(1).sum(1)
    kl = -0.5 * (1 + l - m * m - l.exp()).sum(1)
    return (rec + kl).mean()


for epoch in range(1, a.epochs + 1):
    order = torch.randperm(len(x_train))
    total, t = 0.0, time.perf_counter()
    n = len(x_train) // a.batch_size * a.batch_size
    for i in range(0, n, a.batch_size):
        loss = loss_of(x_train[order[i:i + a.batch_size]])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * a.batch_size
    dt = time.perf_counter() - t
    with torch.no_grad():
        test = sum(loss_of(x_test[i:i + 500]).item() * len(x_test[i:i + 500])
                   for i in range(0, len(x_test), 500)) / len(x_test)
    print(f"epoch {epoch:2d} {dt:7.3f} s {n / dt:8.0f} img/s train {total / n:8.2f} test {test:8.2f}", flush=True)
