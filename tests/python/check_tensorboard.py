"""Reads a vae-train run directory's TensorBoard event files with TensorBoard's own reader
(EventAccumulator, from the `tensorboard` package) and checks them against the run:
every epoch scalar equals its metrics.csv column (to the file's decimals and f32 rounding),
at the step of the epoch's end; the running loss is logged every LOG_EVERY batches; every
image decodes as a PNG of the size it declares, and the last samples are samples.png.

Usage: python check_tensorboard.py RUN_DIR LOG_EVERY
Exits non-zero on any mismatch."""
import csv
import math
import struct
import sys
import zlib

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# tag -> metrics.csv column (as vae-train's tensorboard::EPOCH_TAGS)
EPOCH_TAGS = {
    "neg_elbo/train": "train_neg_elbo",
    "recon/train": "train_recon",
    "kl/train": "train_kl",
    "neg_elbo/test": "test_neg_elbo",
    "recon/test": "test_recon",
    "kl/test": "test_kl",
    "objective/train": "train_objective",
    "kl_weight": "kl_weight",
    "train_seconds": "train_seconds",
    "lr": None,
    "img_per_s": None,
}


def decode_png(data):
    """Decodes an 8-bit grey PNG (every filter type): (width, height, pixels)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit("not a PNG")
    at, idat, width, height = 8, b"", 0, 0
    while at < len(data):
        (n,) = struct.unpack(">I", data[at: at + 4])
        kind, body = data[at + 4: at + 8], data[at + 8: at + 8 + n]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[at + 8 + n: at + 12 + n])[0]:
            raise SystemExit(f"PNG chunk {kind} has a bad CRC")
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            if (depth, colour) != (8, 0):
                raise SystemExit(f"not an 8-bit grey PNG: depth {depth}, colour type {colour}")
        elif kind == b"IDAT":
            idat += body
        at += 12 + n
    raw = zlib.decompress(idat)
    rows, prev = [], bytearray(width)
    for y in range(height):
        f, line = raw[y * (width + 1)], bytearray(raw[y * (width + 1) + 1: (y + 1) * (width + 1)])
        for x in range(width):
            a = line[x - 1] if x else 0
            b, c = prev[x], prev[x - 1] if x else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, b"".join(rows)


def main():
    run_dir, log_every = sys.argv[1], int(sys.argv[2])
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    with open(f"{run_dir}/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    decimals = {k: len(v.split(".")[1]) if "." in v else 0 for k, v in rows[0].items()}
    epochs = len(rows)
    first = acc.Scalars("neg_elbo/train")[0].step  # batches per epoch
    checked = 0
    for tag, column in EPOCH_TAGS.items():
        events = acc.Scalars(tag)
        if [e.step for e in events] != [first * (i + 1) for i in range(epochs)]:
            raise SystemExit(f"{tag}: steps {[e.step for e in events]}, want one per epoch of {first} batches")
        for e, row in zip(events, rows):
            if not math.isfinite(e.value):
                raise SystemExit(f"{tag} at step {e.step}: {e.value}")
            if column is not None:
                want = float(row[column])
                if abs(e.value - want) > 0.5 * 10 ** -decimals[column] + 6e-8 * abs(want):
                    raise SystemExit(f"{tag}, epoch {row['epoch']}: {e.value} in the events, {want} in metrics.csv")
                checked += 1
    batch = acc.Scalars("batch/neg_elbo")
    want_steps = list(range(log_every, first * epochs + 1, log_every)) if log_every else []
    if [e.step for e in batch] != want_steps:
        raise SystemExit(f"batch/neg_elbo at steps {[e.step for e in batch]}, want {want_steps}")
    images = 0
    for tag in ("images/samples", "images/reconstructions"):
        events = acc.Images(tag)
        if len(events) != epochs:
            raise SystemExit(f"{tag}: {len(events)} images for {epochs} epochs")
        for e in events:
            w, h, _ = decode_png(e.encoded_image_string)
            if (w, h) != (e.width, e.height):
                raise SystemExit(f"{tag} at step {e.step}: a {w}x{h} PNG declared {e.width}x{e.height}")
            images += 1
    with open(f"{run_dir}/samples.png", "rb") as f:
        if decode_png(f.read()) != decode_png(acc.Images("images/samples")[-1].encoded_image_string):
            raise SystemExit("the last epoch's samples differ from samples.png")
    print(
        f"TensorBoard's reader: {len(tags['scalars'])} scalar series, {checked} values equal to metrics.csv, "
        f"{len(batch)} running-loss points, {images} images decoded"
    )


if __name__ == "__main__":
    main()
