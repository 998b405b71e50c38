"""The PyTorch model that `vae-train`'s two-level IWAE is measured against: the IWAE paper's MNIST
models in PyTorch on the CPU, the baseline a user would run instead of `vae-train --binarize
--hidden 200,200 --latent 100,50 --upper-hidden 100,100 --activation tanh --batch-size 100
--objective iwae --samples 5 --dreg --lr 1e-3 --adam-eps 1e-4` (`benches/compare_pytorch.py
--model iwae2` runs the two one after the other). It can also be given the same wall-clock budget
as a `vae-train` run and save its weights as a run directory that `vae-train eval` scores.

Models of Burda, Grosse & Salakhutdinov (2015): tanh MLPs, diagonal Gaussians with std exp(logvar/2).
  --layers 2 (default): q(z1|x) 784-200-200-(mu, logvar of 100), q(z2|z1) 100-100-100-(50, 50),
                        p(z2) = N(0, I), p(z1|z2) 50-100-100-(100, 100), p(x|z1) 100-200-200-784 logits
  --layers 1:           q(z|x) 784-200-200-(50, 50), p(z) = N(0, I), p(x|z) 50-200-200-784 logits
Objective: the IWAE bound with K samples per image (--k 5), the B*K rows as one batch; the encoder's
gradient is DReG (Tucker, Lawson, Gu & Maddison 2018) unless --no-dreg. Training images are binarized
afresh each batch (x ~ Bernoulli(pixel / 255)). Adam (lr 1e-3, eps 1e-4), batch 100.

--vamp C replaces N(0, I) at the top level by the VampPrior (Tomczak & Welling 2018), as
`vae-train --prior vamp:C` defines it: p(z_top) = (1/C) sum_c N(z_top; mu_c, exp(lv_c)), the
encoder's posterior at C learned pseudo-inputs u_c = clamp(prior.pseudo_inputs, 0, 1)
(started as C random training images squeezed into [0.01, 0.99], as vae-train's trainer
does); level 1 is q(z1 | u_c), level 2 q(z2 | mean of level 1); lv_c is clamped to [-6, 20] as
vae-train clamps its components' log-variances (elsewhere the script does not clamp; it
binds only beyond that range). The encoder gets gradients through the
prior too; with DReG the prior is part of log p(x, z), so only q's own densities see detached
parameters.

Usage: python torch_iwae.py [--threads 2] [--epochs 1] [--layers 2] [--k 5] [--no-dreg]
                            [--max-batches N] [--verbose] [--data DIR]
                            [--time-budget DURATION] [--lr-schedule constant|cosine|cosine-time]
                            [--test | --no-test] [--log FILE] [--save DIR] [--vamp C]
Reads the MNIST files from the repository's data/mnist unless --data says otherwise.
Prints the torch version and thread count, then per epoch: the epoch, the seconds of the batch loop
alone (time.perf_counter), images/s, and the mean training -IWAE(k) per image in nats.

With any of the flags of the second line (or --vamp), each epoch's line goes on with the learning
rate of the epoch, the test -ELBO (one z per image, in nats, on the 10,000 test images binarized
once with a fixed seed, TEST_BINARIZE_SEED, whatever --seed; --no-test leaves it out) and the
wall-clock seconds since training started, as vae-train evaluates after every epoch; without
them the output is the throughput benchmark's alone (compare_pytorch.py reads it).
  --time-budget DURATION  (3600, 90s, 60m, 1.5h) stop after the batch at which the wall-clock time
                          since training started (evaluations included) reaches DURATION, as
                          `vae-train --time-budget` does; --epochs, when given, stays a cap. A
                          partial last epoch gets its line too (its test -ELBO is that of the
                          final weights), then a line saying where it stopped.
  --lr-schedule           the factor on --lr, set on Adam's parameter groups at each epoch's start
                          (epoch e = 0, 1, ...): constant; cosine 0.5 (1 + cos(pi e / epochs))
                          (needs --epochs with --time-budget); cosine-time, vae-train's
                          `cosine-time` over the budget: 0.5 (1 + cos(pi min(1, s / B))) with s
                          the seconds spent in the batch loops of the finished epochs (evaluation
                          excluded) and B = --time-budget, which it needs; training also stops
                          at an epoch's start once s >= B.
  --log FILE              the epoch lines as CSV too: epoch, batches, complete (0 for a partial
                          epoch), images, train_seconds (the batch loop), img_per_s, train_neg_iwae,
                          lr, test_neg_elbo, test_recon, test_kl (nan with --no-test), wall_seconds.
  --save DIR              at the end, DIR as a vae-train run directory: model.safetensors (the
                          project's parameter names and PyTorch's layouts, the configuration and
                          checksums in its header, written atomically), config.json (the recipe
                          of the corresponding vae-train flags) and metrics.csv (complete epochs).
                          `vae-train eval --run-dir DIR` (and sample, reconstruct, plot, ...)
                          load it; --vamp and cosine-time runs need a vae-train that knows the
                          VampPrior and the cosine-time schedule. Needs the `safetensors` package.
vae-train binarizes the test set with its own random stream, so its -ELBO of a saved run is that of
other binary images than this script's: the two agree to within sampling noise, not digit for digit.
"""
import argparse, gzip, json, math, os, struct, sys, time, zlib
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from torch.func import functional_call

LOG2PI = math.log(2 * math.pi)
PRIOR_LOGVAR_MIN = -6.0  # vae_model::PRIOR_LOGVAR_MIN: the VampPrior's components are no narrower
LOGVAR_RANGE = (-30.0, 20.0)  # vae-train's clamp of log-variances (vae_autograd::LOGVAR_RANGE)
TEST_BINARIZE_SEED = 0  # the test set's one binarization, whatever --seed
CSV_COLUMNS = ["epoch", "batches", "complete", "images", "train_seconds", "img_per_s", "train_neg_iwae",
               "lr", "test_neg_elbo", "test_recon", "test_kl", "wall_seconds"]


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


def log_normal(z, mu, lv):  # log N(z; mu, exp(lv)), summed over the features (the last axis)
    return -0.5 * (LOG2PI + lv + (z - mu) ** 2 * torch.exp(-lv)).sum(-1)


class IWAE(nn.Module):
    def __init__(s, layers, vamp=0):
        super().__init__()
        lat, hid = ([100, 50], [[200, 200], [100, 100]]) if layers == 2 else ([50], [[200, 200]])
        ins = [784] + lat[:-1]
        s.lat, s.hid = lat, hid
        s.q = nn.ModuleList(mlp([i, *h, 2 * l]) for i, h, l in zip(ins, hid, lat))  # q(z_l | z_l-1), z_0 = x
        s.p = nn.ModuleList(mlp([l, *h[::-1], 2 * i]) for i, h, l in zip(ins[1:], hid[1:], lat[1:]))  # p(z_l-1 | z_l)
        s.dec = mlp([lat[0], *hid[0][::-1], 784])  # p(x | z1): Bernoulli logits
        # The VampPrior's pseudo-inputs (created last, so that the other weights start as without it).
        s.pseudo_inputs = nn.Parameter(torch.randn(vamp, 784) * 0.01 + 0.05) if vamp else None

    def prior_components(s):
        """The VampPrior's (mu_c, lv_c), C x top latent: the encoder's top level at the clamped
        pseudo-inputs, each level above the first taking the mean of the one below."""
        mu = torch.clamp(s.pseudo_inputs, 0.0, 1.0)
        for q in s.q:
            mu, lv = q(mu).chunk(2, 1)
        return mu, torch.clamp(lv, PRIOR_LOGVAR_MIN, LOGVAR_RANGE[1])

    def log_prior(s, z):  # log p(z_top) of each row
        if s.pseudo_inputs is None:
            return -0.5 * (LOG2PI + z ** 2).sum(1)  # N(0, I)
        mu, lv = s.prior_components()
        per_component = log_normal(z[:, None, :], mu[None], lv[None])  # rows x C
        return torch.logsumexp(per_component, 1) - math.log(len(mu))

    def log_weights(s, x, k, dreg):
        """log w_j = log p(x, z_j) - log q(z_j | x) (B*K rows, image-major), -log p(x | z1_j), and
        the z copies the densities and the decoder saw (hooked for DReG by neg_iwae)."""
        log_w, seen, z = 0.0, [], None
        for l, q in enumerate(s.q):
            h = q(x).repeat_interleave(k, 0) if l == 0 else q(z)  # encode the B images once, then K copies
            mu, lv = h.chunk(2, 1)
            z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
            if dreg:
                zs = z.clone()  # z as the densities and decoder see it (hooked in neg_iwae)
                if l == 0:
                    mu, lv = mu.detach(), lv.detach()
                else:
                    frozen = {name: t.detach() for name, t in q.named_parameters()}
                    mu, lv = functional_call(q, frozen, (seen[-1],)).chunk(2, 1)
            else:
                zs = z
            log_w = log_w - log_normal(zs, mu, lv)
            seen.append(zs)
        log_w = log_w + s.log_prior(seen[-1])  # live parameters: the prior is part of log p(x, z)
        for j, p in enumerate(s.p):
            log_w = log_w + log_normal(seen[j], *p(seen[j + 1]).chunk(2, 1))
        xk = x.repeat_interleave(k, 0)
        recon = F.binary_cross_entropy_with_logits(s.dec(seen[0]), xk, reduction="none").sum(1)
        return log_w - recon, recon, seen

    def neg_iwae(s, x, k, dreg):
        """Mean over the batch of -log (1/k) sum_j w_j, w_j = p(x, z_j) / q(z_j | x); rows image-major.

        Plain IWAE: backward() of this is the IWAE gradient, sum_j w~_j d log w_j (w~ = normalised w).
        DReG: each q density is evaluated with its parameters frozen (mu, logvar detached at the first
        level; the upper q's network re-run on z1 with detached weights, so that log q(z2|z1) still
        depends on z1), so the encoder reaches log w only through the reparameterised samples. Each z
        enters the densities and the decoder through a copy whose gradient a hook multiplies by w~_j;
        the sampling path between levels (z1 -> live q(z2|z1) -> z2) bypasses the copies, so every
        encoder path is scaled exactly once: the encoder gets sum_j w~_j^2 (d log w_j/dz_j)(dz_j/dphi),
        DReG's estimator, while the decoder and p(z1|z2), whose parameters sit on no z, keep IWAE's
        (so do the VampPrior's pseudo-inputs, and the encoder through them).
        """
        log_w, _, seen = s.log_weights(x, k, dreg)
        lw = log_w.view(x.shape[0], k)
        if dreg:
            w = torch.softmax(lw.detach(), 1).reshape(-1, 1)  # w~, one per row
            for zs in seen:
                zs.register_hook(lambda g: g * w)
        return -(torch.logsumexp(lw, 1) - math.log(k)).mean()  # d/dlog w_j = -w~_j / B

    @torch.no_grad()
    def test_elbo(s, x, seed, batch=1000):
        """(-ELBO, recon, KL) per image of x, one z per image, with noise from its own stream
        (the training stream is left as it was)."""
        recon = kl = 0.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for i in range(0, len(x), batch):
                log_w, rec, _ = s.log_weights(x[i:i + batch], 1, False)
                recon += rec.sum().item(); kl += (-log_w - rec).sum().item()
        return (recon + kl) / len(x), recon / len(x), kl / len(x)


def parse_duration(text):
    """`3600`, `90s`, `60m` (or `60min`), `1.5h` -> seconds, as vae-train reads --time-budget."""
    t = text.strip()
    i = next((j for j, c in enumerate(t) if c.isalpha()), len(t))
    scale = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}.get(t[i:])
    try:
        v = float(t[:i]) * scale
    except (TypeError, ValueError):
        v = None
    if v is None or not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"'{text}': expected a positive duration like 3600, 90s, 60m or 1.5h")
    return v


def lr_factor(schedule, epoch, epochs, seconds, budget):
    """The factor on the base rate for epoch `epoch` (0-based), which starts after `seconds` of batches."""
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    if schedule == "cosine-time":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, seconds / budget)))
    return 1.0


# --- Saving as a vae-train run directory -------------------------------------------------------

def project_tensors(m):
    """The model's parameters under vae-train's names, as float32 numpy arrays in nn.Linear's layout
    ([out, in] weights): each fused (mu, logvar) head of the script is the two heads `mu` and
    `logvar` of the project (its first and second half of rows)."""
    out = {}

    def linears(prefix, seq, head):  # seq: Linear, Tanh, ..., Linear (the last one the head)
        lin = [layer for layer in seq if isinstance(layer, nn.Linear)]
        for i, layer in enumerate(lin[:-1]):
            out[f"{prefix}.{i}.weight"], out[f"{prefix}.{i}.bias"] = layer.weight, layer.bias
        last = lin[-1]
        if head == "out":
            out[f"{prefix}.out.weight"], out[f"{prefix}.out.bias"] = last.weight, last.bias
        else:
            half = last.out_features // 2
            out[f"{prefix}.mu.weight"], out[f"{prefix}.mu.bias"] = last.weight[:half], last.bias[:half]
            out[f"{prefix}.logvar.weight"], out[f"{prefix}.logvar.bias"] = last.weight[half:], last.bias[half:]

    for l, q in enumerate(m.q):
        linears("encoder" if l == 0 else f"encoder{l + 1}", q, "gauss")
    for j, p in enumerate(m.p):  # p[j] = p(z_(j+1) | z_(j+2)): vae-train's decoder{j+2}
        linears(f"decoder{j + 2}", p, "gauss")
    linears("decoder", m.dec, "out")
    if m.pseudo_inputs is not None:
        out["prior.pseudo_inputs"] = m.pseudo_inputs
    return {k: np.ascontiguousarray(v.detach().cpu().numpy(), dtype="<f4") for k, v in out.items()}


def vae_config(m):
    """vae.config as vae-train serialises its VaeConfig (compact JSON)."""
    c = {"input": 784, "hidden": m.hid[0], "latent": m.lat[0], "activation": "tanh",
         "likelihood": {"kind": "bernoulli"}}
    if len(m.lat) > 1:
        c["upper"] = [{"hidden": h, "latent": l} for h, l in zip(m.hid[1:], m.lat[1:])]
    c["shape"] = {"height": 28, "width": 28, "channels": 1}
    if m.pseudo_inputs is not None:
        c["prior"] = {"Vamp": {"components": len(m.pseudo_inputs)}}
    return json.dumps(c, separators=(",", ":"))


def recipe(a, m, epochs, budget, run_dir):
    """config.json: the recipe of the vae-train flags that correspond (format 2)."""
    if a.lr_schedule == "cosine":
        schedule = {"Cosine": {"epochs": 1}}  # as vae-train writes `cosine`: its length is the run's epochs
    elif a.lr_schedule == "cosine-time":
        schedule = {"CosineTime": {"seconds": budget}}
    else:
        schedule = "Constant"
    model = {"arch": {"kind": "mlp"}, "hidden": m.hid[0], "latent": m.lat,
             "upper_hidden": m.hid[1] if len(m.hid) > 1 else [100, 100], "activation": "tanh",
             "likelihood": {"kind": "bernoulli"}}
    if m.pseudo_inputs is not None:  # absent: the standard normal
        model["prior"] = {"Vamp": {"components": len(m.pseudo_inputs)}}
    return json.dumps({
        "format": 2,
        "model": model,
        "training": {"epochs": epochs, "batch_size": a.batch, "lr": a.lr, "lr_schedule": schedule,
                     "adam_eps": a.adam_eps, "adam_beta1": 0.9, "adam_beta2": 0.999, "objective": "iwae",
                     "samples": a.k, "dreg": a.dreg, "beta": 1.0, "warmup": 0.0, "free_bits": 0.0,
                     "binarize": True, "seed": a.seed, "threads": a.threads, "snapshot_every": None},
        "data": {"path": os.path.abspath(a.data), "max_data_bytes": 2147483648, "subset": None,
                 "exclude_label": None, "test_binarize_seed": 1, "channels": None, "image_size": None,
                 "test_fraction": 0.1, "split_seed": 1, "split": "stratified", "npz_keys": None, "label_column": None},
        "output": {"run_dir": os.path.abspath(run_dir), "scale": None, "log_every": 10},
    }, indent=2)


def write_atomic(path, data):
    """data (bytes) to path: a temporary sibling flushed to disk, then renamed over path."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data); f.flush(); os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_run(run_dir, m, a, epochs, budget, epochs_done, batches_done, metrics):
    """Writes run_dir as vae-train's run directory (see crates/model/src/checkpoint.rs): the
    checksums are the CRC-32 of each tensor's little-endian bytes and, under `__metadata__`, of
    every other metadata `key=value\\n`, sorted by key."""
    from safetensors.numpy import save as safetensors_bytes
    os.makedirs(run_dir, exist_ok=True)
    tensors = project_tensors(m)
    config = recipe(a, m, epochs, budget, run_dir)
    meta = {"vae.config": vae_config(m), "train.config": config, "format": "pt",
            "epochs_done": str(epochs_done), "batches_done": str(batches_done),
            "trained_by": f"benches/torch_iwae.py (torch {torch.__version__}) {' '.join(sys.argv[1:])}"}
    crc = lambda b: f"{zlib.crc32(b):08x}"
    sums = {name: crc(t.tobytes()) for name, t in tensors.items()}
    sums["__metadata__"] = crc("".join(f"{k}={meta[k]}\n" for k in sorted(meta)).encode())
    meta["vae.crc32"] = json.dumps(dict(sorted(sums.items())), separators=(",", ":"))
    write_atomic(os.path.join(run_dir, "model.safetensors"), safetensors_bytes(tensors, metadata=meta))
    write_atomic(os.path.join(run_dir, "config.json"), config.encode())
    lines = ["epoch,test_neg_elbo,test_recon,test_kl,kl_weight,train_seconds,train_objective"]
    lines += [f"{r['epoch']},{r['test_neg_elbo']:.6f},{r['test_recon']:.6f},{r['test_kl']:.6f},1.000000,"
              f"{r['train_seconds']:.4f},{r['train_neg_iwae']:.6f}" for r in metrics]
    write_atomic(os.path.join(run_dir, "metrics.csv"), ("\n".join(lines) + "\n").encode())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "mnist"))
    ap.add_argument("--layers", type=int, choices=(1, 2), default=2)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--dreg", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, help="epochs to train [default: 1; with --time-budget: no cap]")
    ap.add_argument("--batch", type=int, default=100); ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--adam-eps", type=float, default=1e-4); ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-batches", type=int, default=0, help="stop each epoch after N batches (0: all)")
    ap.add_argument("--verbose", action="store_true", help="print the mean loss of every 50 batches")
    ap.add_argument("--time-budget", type=parse_duration, metavar="DURATION",
                    help="stop after the batch at which the wall-clock time since training started reaches it")
    ap.add_argument("--lr-schedule", choices=("constant", "cosine", "cosine-time"))
    ap.add_argument("--test", action=argparse.BooleanOptionalAction,
                    help="the test -ELBO after every epoch [default: on with --time-budget, --lr-schedule, --log, --save or --vamp]")
    ap.add_argument("--log", metavar="FILE", help="the epoch lines as CSV too")
    ap.add_argument("--save", metavar="DIR", help="write DIR as a vae-train run directory at the end")
    ap.add_argument("--vamp", type=int, default=0, metavar="C", help="the VampPrior with C pseudo-inputs")
    a = ap.parse_args()
    budget, schedule = a.time_budget, a.lr_schedule or "constant"
    if a.epochs is not None and a.epochs < 1:
        ap.error("--epochs must be at least 1")
    if a.vamp < 0:
        ap.error("--vamp takes the number of pseudo-inputs, at least 1")
    if schedule == "cosine-time" and budget is None:
        ap.error("--lr-schedule cosine-time anneals over the time budget: give --time-budget")
    if schedule == "cosine" and budget is not None and a.epochs is None:
        ap.error("--lr-schedule cosine anneals over --epochs: give --epochs (or use cosine-time)")
    epochs = a.epochs if a.epochs is not None else (None if budget is not None else 1)  # None: no cap
    extended = any(v is not None for v in (a.time_budget, a.lr_schedule, a.test, a.log, a.save)) or a.vamp > 0
    test = extended if a.test is None else a.test

    torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
    info = [ln.strip() for ln in torch.__config__.parallel_info().splitlines() if "get_num_threads" in ln]
    print(f"torch {torch.__version__}  {info[0] if info else ''}", flush=True)
    xtr = idx_images(f"{a.data}/train-images-idx3-ubyte.gz")
    if test:
        xte = idx_images(f"{a.data}/t10k-images-idx3-ubyte.gz")
        xte = torch.bernoulli(xte, generator=torch.Generator().manual_seed(TEST_BINARIZE_SEED))
    m = IWAE(a.layers, a.vamp)
    if a.vamp:  # as vae-train starts them: random training images, squeezed into [0.01, 0.99]
        with torch.no_grad():
            m.pseudo_inputs.copy_(0.01 + 0.98 * xtr[torch.randint(len(xtr), (a.vamp,))])
    opt = torch.optim.Adam(m.parameters(), lr=a.lr, eps=a.adam_eps)
    per_epoch = math.ceil(len(xtr) / a.batch)
    if a.max_batches:
        per_epoch = min(per_epoch, a.max_batches)
    log = open(a.log, "w") if a.log else None
    if log:
        print(",".join(CSV_COLUMNS), file=log, flush=True)
    metrics, trained, ep, stop = [], 0.0, 0, None  # metrics of complete epochs; seconds of batches
    started = time.perf_counter()
    while epochs is None or ep < epochs:
        if schedule == "cosine-time" and trained >= budget:
            stop = f"the cosine-time schedule is over ({trained:.1f} s of batches)"
            break
        lr = a.lr * lr_factor(schedule, ep, epochs, trained, budget)
        if a.lr_schedule is not None:
            for g in opt.param_groups:
                g["lr"] = lr
        ep += 1
        perm = torch.randperm(len(xtr)); tot, images, run, batches = 0.0, 0, 0.0, 0
        t = time.perf_counter()
        for b, i in enumerate(range(0, len(xtr), a.batch)):
            if a.max_batches and b == a.max_batches:
                break
            x = torch.bernoulli(xtr[perm[i:i + a.batch]])  # dynamic binarization, fresh every batch
            loss = m.neg_iwae(x, a.k, a.dreg)
            opt.zero_grad(); loss.backward(); opt.step()
            v = loss.item(); tot += v * len(x); images += len(x); run += v; batches += 1
            if a.verbose and (b + 1) % 50 == 0:
                print(f"  batch {b + 1:4d}  mean -IWAE(k={a.k}) of the last 50: {run / 50:8.2f}", flush=True); run = 0.0
            if budget is not None and time.perf_counter() - started >= budget:
                stop = f"time budget of {budget:.0f} s reached"
                break
        dt = time.perf_counter() - t
        trained += dt
        complete = batches == per_epoch
        line = f"epoch {ep:2d}  {dt:7.3f} s  {images / dt:8.0f} img/s  train -IWAE(k={a.k}) {tot / images:8.2f}"
        row = {"epoch": ep, "batches": batches, "complete": int(complete), "images": images,
               "train_seconds": dt, "img_per_s": images / dt, "train_neg_iwae": tot / images, "lr": lr,
               "test_neg_elbo": math.nan, "test_recon": math.nan, "test_kl": math.nan}
        if extended:
            line += f"  lr {lr:.3e}"
            if test:
                row["test_neg_elbo"], row["test_recon"], row["test_kl"] = m.test_elbo(xte, seed=1000 + ep)
                line += f"  test -ELBO {row['test_neg_elbo']:8.2f}"
            row["wall_seconds"] = time.perf_counter() - started
            line += f"  wall {row['wall_seconds']:7.1f} s" + ("" if complete else f"  (partial: {batches} batches)")
        print(line, flush=True)
        if log:
            cell = lambda v: f"{v:.7g}" if isinstance(v, float) else str(v)
            print(",".join(cell(row.get(c, math.nan)) for c in CSV_COLUMNS), file=log, flush=True)
        if complete:
            metrics.append(row)
        if stop:
            break
    if stop:
        print(f"stopped after batch {batches} of epoch {ep}: {stop}", flush=True)
    if a.save:
        done = len(metrics)
        save_run(a.save, m, a, epochs if epochs is not None else ep, budget, done,
                 0 if done == ep else batches, metrics)
        print(f"saved {a.save} ({done} complete epochs{'' if done == ep else f' and {batches} batches'})", flush=True)


if __name__ == "__main__":
    main()
