"""The PyTorch model that `vae-train`'s two-level IWAE is measured against: the IWAE paper's MNIST
models in PyTorch on the CPU, the baseline a user would run instead of `vae-train --binarize
--hidden 200,200 --latent 100,50 --upper-hidden 100,100 --activation tanh --batch-size 100
--objective iwae --samples 5 --dreg --lr 1e-3 --adam-eps 1e-4` (`benches/compare_pytorch.py
--model iwae2` runs the two one after the other).

Models of Burda, Grosse & Salakhutdinov (2015): tanh MLPs, diagonal Gaussians with std exp(logvar/2).
  --layers 2 (default): q(z1|x) 784-200-200-(mu, logvar of 100), q(z2|z1) 100-100-100-(50, 50),
                        p(z2) = N(0, I), p(z1|z2) 50-100-100-(100, 100), p(x|z1) 100-200-200-784 logits
  --layers 1:           q(z|x) 784-200-200-(50, 50), p(z) = N(0, I), p(x|z) 50-200-200-784 logits
Objective: the IWAE bound with K samples per image (--k 5), the B*K rows as one batch; the encoder's
gradient is DReG (Tucker, Lawson, Gu & Maddison 2018) unless --no-dreg. Training images are binarized
afresh each batch (x ~ Bernoulli(pixel / 255)). Adam (lr 1e-3, eps 1e-4), batch 100.

Usage: python torch_iwae.py [--threads 2] [--epochs 1] [--layers 2] [--k 5] [--no-dreg]
                            [--max-batches N] [--verbose] [--data DIR]
Reads the MNIST files from the repository's data/mnist unless --data says otherwise.
Prints the torch version and thread count, then per epoch: the epoch, the seconds of the batch loop
alone (time.perf_counter), images/s, and the mean training -IWAE(k) per image in nats.
"""
import argparse, gzip, math, os, struct, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from torch.func import functional_call

LOG2PI = math.log(2 * math.pi)


def idx_images(path):  # gzip IDX file -> float32 (n, 784) in [0, 1]
    raw = gzip.open(path).read()
    nd = raw[3]; dims = struct.unpack(">" + "I" * nd, raw[4:4 + 4 * nd])
    x = np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims[0], -1)
    return torch.from_numpy(x.astype(np.float32) / 255)


def mlp(sizes):  # Linear layers with tanh between them (none after the last)
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.Tanh()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def log_normal(z, mu, lv):  # log N(z; mu, exp(lv)), summed over the features
    return -0.5 * (LOG2PI + lv + (z - mu) ** 2 * torch.exp(-lv)).sum(1)


class IWAE(nn.Module):
    def __init__(s, layers):
        super().__init__()
        lat, hid = ([100, 50], [[200, 200], [100, 100]]) if layers == 2 else ([50], [[200, 200]])
        ins = [784] + lat[:-1]
        s.q = nn.ModuleList(mlp([i, *h, 2 * l]) for i, h, l in zip(ins, hid, lat))  # q(z_l | z_l-1), z_0 = x
        s.p = nn.ModuleList(mlp([l, *h[::-1], 2 * i]) for i, h, l in zip(ins[1:], hid[1:], lat[1:]))  # p(z_l-1 | z_l)
        s.dec = mlp([lat[0], *hid[0][::-1], 784])  # p(x | z1): Bernoulli logits

    def neg_iwae(s, x, k, dreg):
        """Mean over the batch of -log (1/k) sum_j w_j, w_j = p(x, z_j) / q(z_j | x); rows image-major.

        Plain IWAE: backward() of this is the IWAE gradient, sum_j w~_j d log w_j (w~ = normalised w).
        DReG: each q density is evaluated with its parameters frozen (mu, logvar detached at the first
        level; the upper q's network re-run on z1 with detached weights, so that log q(z2|z1) still
        depends on z1), so the encoder reaches log w only through the reparameterised samples. Each z
        enters the densities and the decoder through a copy whose gradient a hook multiplies by w~_j;
        the sampling path between levels (z1 -> live q(z2|z1) -> z2) bypasses the copies, so every
        encoder path is scaled exactly once: the encoder gets sum_j w~_j^2 (d log w_j/dz_j)(dz_j/dphi),
        DReG's estimator, while the decoder and p(z1|z2), whose parameters sit on no z, keep IWAE's.
        """
        n = x.shape[0]
        log_w, seen, z = 0.0, [], None
        for l, q in enumerate(s.q):
            h = q(x).repeat_interleave(k, 0) if l == 0 else q(z)  # encode the B images once, then K copies
            mu, lv = h.chunk(2, 1)
            z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
            if dreg:
                zs = z.clone()  # z as the densities and decoder see it (hooked below)
                if l == 0:
                    mu, lv = mu.detach(), lv.detach()
                else:
                    frozen = {name: t.detach() for name, t in q.named_parameters()}
                    mu, lv = functional_call(q, frozen, (seen[-1],)).chunk(2, 1)
            else:
                zs = z
            log_w = log_w - log_normal(zs, mu, lv)
            seen.append(zs)
        log_w = log_w - 0.5 * (LOG2PI + seen[-1] ** 2).sum(1)  # p(z_top) = N(0, I)
        for j, p in enumerate(s.p):
            log_w = log_w + log_normal(seen[j], *p(seen[j + 1]).chunk(2, 1))
        xk = x.repeat_interleave(k, 0)
        log_w = log_w - F.binary_cross_entropy_with_logits(s.dec(seen[0]), xk, reduction="none").sum(1)
        lw = log_w.view(n, k)
        if dreg:
            w = torch.softmax(lw.detach(), 1).reshape(-1, 1)  # w~, one per row
            for zs in seen:
                zs.register_hook(lambda g: g * w)
        return -(torch.logsumexp(lw, 1) - math.log(k)).mean()  # d/dlog w_j = -w~_j / B


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "mnist"))
    ap.add_argument("--layers", type=int, choices=(1, 2), default=2)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--dreg", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--threads", type=int, default=2); ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=100); ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--adam-eps", type=float, default=1e-4); ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-batches", type=int, default=0, help="stop each epoch after N batches (0: all)")
    ap.add_argument("--verbose", action="store_true", help="print the mean loss of every 50 batches")
    a = ap.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
    info = [ln.strip() for ln in torch.__config__.parallel_info().splitlines() if "get_num_threads" in ln]
    print(f"torch {torch.__version__}  {info[0] if info else ''}", flush=True)
    xtr = idx_images(f"{a.data}/train-images-idx3-ubyte.gz")
    m = IWAE(a.layers)
    opt = torch.optim.Adam(m.parameters(), lr=a.lr, eps=a.adam_eps)
    for ep in range(1, a.epochs + 1):
        perm = torch.randperm(len(xtr)); tot, images, run = 0.0, 0, 0.0
        t = time.perf_counter()
        for b, i in enumerate(range(0, len(xtr), a.batch)):
            if a.max_batches and b == a.max_batches:
                break
            x = torch.bernoulli(xtr[perm[i:i + a.batch]])  # dynamic binarization, fresh every batch
            loss = m.neg_iwae(x, a.k, a.dreg)
            opt.zero_grad(); loss.backward(); opt.step()
            v = loss.item(); tot += v * len(x); images += len(x); run += v
            if a.verbose and (b + 1) % 50 == 0:
                print(f"  batch {b + 1:4d}  mean -IWAE(k={a.k}) of the last 50: {run / 50:8.2f}", flush=True); run = 0.0
        dt = time.perf_counter() - t
        print(f"epoch {ep:2d}  {dt:7.3f} s  {images / dt:8.0f} img/s  train -IWAE(k={a.k}) {tot / images:8.2f}", flush=True)


if __name__ == "__main__":
    main()
