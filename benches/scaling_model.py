"""A model of data-parallel training of the reference VAE (784-400-20, 652,824 parameters)
on N machines of this kind (2 cores each), from measurements on one machine: step time and
speed-up for N = 1..64 on 10, 25 and 100 Gb/s networks. Not part of CI; see docs/scaling.md.

Usage: python3 benches/scaling_model.py

Step time on N machines with global batch B:
    t(N, B) = t_compute(B / N) + 2 (N - 1) / N * S / bandwidth + 2 (N - 1) * latency
(ring allreduce: each rank sends and receives 2 (N - 1) / N times the gradient's S bytes in
2 (N - 1) messages). t_compute(b) is fitted to the measured training throughput of one
machine (2 threads) at batch b: t_compute(b) = t0 + b / rate."""

# One machine, 2 threads, `vae-train --threads 2 --epochs 1 --batch-size b` (img/s of the
# second epoch line of `--epochs 2`), AMD EPYC (Zen 4), 2026-11-26.
MEASURED = {16: 20082, 32: 28116, 64: 34123, 128: 39624, 256: 41465, 512: 44088}
PARAMS = 652_824
S = PARAMS * 4 + 5 * 4  # f32 gradients, plus the loss sums and the stop flag
LATENCY = 25e-6  # seconds per message (TCP over Ethernet; an assumption, not measured)
EFFICIENCY = 0.9  # fraction of the link rate an allreduce achieves (an assumption)


def fit(points):
    """Least-squares t = t0 + b * c over (b, seconds per step)."""
    n = len(points)
    mb = sum(b for b, _ in points) / n
    mt = sum(t for _, t in points) / n
    c = sum((b - mb) * (t - mt) for b, t in points) / sum((b - mb) ** 2 for b, _ in points)
    return mt - c * mb, c


def main():
    points = [(b, b / r) for b, r in MEASURED.items() if r > 0]
    t0, c = fit(points)
    print(f"t_compute(b) = {t0 * 1e3:.3f} ms + b * {c * 1e6:.2f} us  (fit to {len(points)} measurements)")
    for b, t in points:
        print(f"  batch {b:5d}: measured {t * 1e3:7.3f} ms/step, fit {(t0 + c * b) * 1e3:7.3f}")
    for gbit in [10, 25, 100]:
        bw = gbit * 1e9 / 8 * EFFICIENCY
        print(f"\n{gbit} Gb/s: step ms (speed-up over one machine at the same global batch)")
        print("  N  " + "".join(f"{'B=' + str(B):>22}" for B in [128, 1024, 8192]))
        for n in [1, 2, 4, 8, 16, 32, 64]:
            cells = []
            for B in [128, 1024, 8192]:
                one = t0 + c * B
                ar = 0 if n == 1 else 2 * (n - 1) / n * S / bw + 2 * (n - 1) * LATENCY
                t = t0 + c * B / n + ar
                cells.append(f"{t * 1e3:9.3f} ({one / t:5.2f}x)")
            print(f"  {n:<3}" + "".join(f"{x:>22}" for x in cells))


main()
