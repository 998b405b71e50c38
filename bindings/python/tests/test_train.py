"""Training from Python: the run directory is the command line's, and the command line's
run is Python's."""

import json
import signal

import numpy as np
import pytest
import vae
from conftest import SMALL, read_csv


def test_a_python_run_is_a_command_line_run(tmp_path, mnist, cli):
    xtr, ytr, xte, yte = mnist
    seen = []
    m = vae.train(xtr, xte, y_train=ytr, y_test=yte, run_dir=tmp_path / "run", on_epoch=seen.append, **{**SMALL, "epochs": 2})
    run = tmp_path / "run"
    for name in ["config.json", "metrics.csv", "model.safetensors", "training_state.safetensors", "samples.png",
                 "reconstructions.png", "data.npz"]:
        assert (run / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents.") for p in run.iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["hidden"] == [64] and config["model"]["latent"] == [8]
    assert config["data"]["path"] == str(run / "data.npz")
    # on_epoch: one dict per epoch, the metrics file's columns and the speed.
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert [d["epoch"] for d in seen] == [1, 2]
    assert set(seen[0]) == set(header) | {"images", "img_per_s"}
    assert seen[0]["images"] == 2000 and seen[0]["img_per_s"] > 0
    assert [d["test_neg_elbo"] for d in seen] == [d["test_neg_elbo"] for d in m.metrics]
    # Reconstructions equal vae-train's, to the bit, on the test images it reads back.
    cli("reconstruct", "--run-dir", run, "--n", 8, "--csv", tmp_path / "r.csv")
    ours = m.reconstruct(xte[:8]).reshape(8, -1)
    np.testing.assert_array_equal(ours, read_csv(tmp_path / "r.csv"))
    # Scores equal vae-train score's (printed to 6 decimals).
    cli("score", "--run-dir", run, "--anomaly-digit", 2)
    table = np.loadtxt(run / "scores.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(m.score(xte), table[:, 2], atol=2e-6, rtol=0)
    np.testing.assert_array_equal(table[:, 1], yte)
    # The other commands read it too.
    for args in (["sample", "--n", 4], ["eval", "--k", 10, "--n", 100], ["latents"], ["plot"], ["export"]):
        cli(args[0], "--run-dir", run, *args[1:])


def test_the_same_run_as_the_command_line(tmp_path, mnist, cli):
    """vae.train on arrays and vae-train on the same arrays in a file give the same model."""
    xtr, _, xte, _ = mnist
    opts = dict(SMALL, epochs=2, batch_size=100, lr=2e-3, seed=7, beta=0.5, warmup=1, binarize=True)
    m = vae.train(xtr, xte, run_dir=tmp_path / "py", **opts)
    cli("train", "--data", tmp_path / "py" / "data.npz", "--run-dir", tmp_path / "cli", "--hidden", 64, "--latent", 8,
        "--epochs", 2, "--threads", 2, "--batch-size", 100, "--lr", 2e-3, "--seed", 7, "--beta", 0.5, "--warmup", 1,
        "--binarize")
    c = vae.load(tmp_path / "cli")
    assert len(m.metrics) == len(c.metrics) == 2
    for a, b in zip(m.metrics, c.metrics):
        # metrics.csv holds 6 decimals.
        assert {k: v for k, v in a.items() if k != "train_seconds"} == pytest.approx(
            {k: v for k, v in b.items() if k != "train_seconds"}, abs=1e-6, rel=0)
    np.testing.assert_array_equal(m.reconstruct(xte), c.reconstruct(xte))


def test_a_command_line_run_loads(tmp_path, mnist, cli):
    _, _, _, _ = mnist
    from conftest import read_idx, MNIST
    xte = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")[:300]
    run = tmp_path / "cli"
    cli("--subset", 1000, "--epochs", 1, "--hidden", 32, "--latent", 4, "--threads", 2, "--run-dir", run)
    cli("reconstruct", "--run-dir", run, "--n", 8, "--csv", tmp_path / "r.csv")
    cli("score", "--run-dir", run, "--method", "iwae", "--k", 20, "--seed", 3)
    m = vae.load(run)
    assert m.run_dir == run and m.input_shape == [28, 28] and m.latent == [4]
    assert len(m.metrics) == 1 and m.config["model"]["hidden"] == [32]
    np.testing.assert_array_equal(m.reconstruct(xte[:8]).reshape(8, -1), read_csv(tmp_path / "r.csv"))
    scores = np.loadtxt(run / "scores.csv", delimiter=",", skiprows=1)[:300, 2]
    np.testing.assert_allclose(-m.log_likelihood(xte, k=20, seed=3), scores, atol=2e-6, rtol=0)
    assert "784-32-4" in repr(m)


def test_save_and_load(tmp_path, mnist, cli):
    xtr, _, xte, _ = mnist
    m = vae.train(xtr, xte, run_dir=tmp_path / "a", **SMALL)
    m.save(tmp_path / "b")
    b = vae.load(tmp_path / "b")
    np.testing.assert_array_equal(m.reconstruct(xte), b.reconstruct(xte))
    assert b.metrics == [pytest.approx(d, abs=1e-4, rel=0) for d in m.metrics]
    # The copy carries its data: vae-train reads it without the original.
    assert b.config["data"]["path"] == str(tmp_path / "b" / "data.npz")
    cli("reconstruct", "--run-dir", tmp_path / "b", "--n", 4, "--csv", tmp_path / "r.csv")
    np.testing.assert_array_equal(b.reconstruct(xte[:4]).reshape(4, -1), read_csv(tmp_path / "r.csv"))
    with pytest.raises(FileExistsError, match="already holds a trained model"):
        m.save(tmp_path / "b")
    m.save(tmp_path / "b", overwrite=True)


def test_shapes_of_a_two_level_model(tmp_path, mnist):
    xtr, _, xte, _ = mnist
    m = vae.train(xtr, xte, run_dir=tmp_path / "r", hidden=(64,), latent=(8, 4), upper_hidden=(16,), objective="iwae",
                  samples=3, dreg=True, epochs=1)
    assert m.latent == [8, 4]
    mu, logvar = m.encode(xte[:10])
    assert mu.shape == logvar.shape == (10, 4) and mu.dtype == np.float32
    levels = m.encode_levels(xte[:10])
    assert [l[0].shape for l in levels] == [(10, 8), (10, 4)]
    np.testing.assert_array_equal(levels[-1][0], mu)
    np.testing.assert_array_equal(m.decode(mu), m.reconstruct(xte[:10]))
    assert m.sample(5, seed=1).shape == (5, 28, 28)
    np.testing.assert_array_equal(m.sample(5, seed=1), m.sample(5, seed=1))
    assert m.reconstruct(xte[:3].reshape(3, 784)).shape == (3, 784)
    ll = m.log_likelihood(xte[:4], k=50)
    elbo = m.elbo(xte[:4], k=50)
    assert ll.shape == (4,) and ll.dtype == np.float64 and np.all(ll >= elbo - 1.0)


def test_inputs_in_every_dtype_and_layout(tmp_path, cli):
    r = np.random.default_rng(0)
    x = r.integers(0, 256, (300, 8, 8, 3), dtype=np.uint8)
    xt = r.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    m = vae.train(x, xt, run_dir=tmp_path / "rgb", hidden=(32,), latent=4, epochs=1)
    assert m.input_shape == [8, 8, 3]
    out = m.reconstruct(xt)
    assert out.shape == (40, 8, 8, 3)
    cli("reconstruct", "--run-dir", tmp_path / "rgb", "--n", 8, "--csv", tmp_path / "r.csv")
    # The command line's rows are channels first. (The same 8 rows: a product's last bit can
    # depend on how many rows it has.)
    first = m.reconstruct(xt[:8])
    np.testing.assert_array_equal(first.transpose(0, 3, 1, 2).reshape(8, -1), read_csv(tmp_path / "r.csv"))
    np.testing.assert_allclose(first, out[:8], atol=1e-6, rtol=0)
    as_float = xt.astype(np.float32) * np.float32(1 / 255)
    np.testing.assert_array_equal(m.encode(as_float)[0], m.encode(xt)[0])
    np.testing.assert_array_equal(m.encode(as_float.astype(np.float64))[0], m.encode(xt)[0])
    np.testing.assert_array_equal(m.encode(np.asfortranarray(as_float))[0], m.encode(xt)[0])
    np.testing.assert_array_equal(m.encode(as_float.astype(">f4"))[0], m.encode(xt)[0])
    rows = as_float.transpose(0, 3, 1, 2).reshape(40, -1)
    np.testing.assert_array_equal(m.reconstruct(rows), out.transpose(0, 3, 1, 2).reshape(40, -1))
    assert m.sample(2, seed=0).shape == (2, 8, 8, 3)


def test_python_and_cli_keep_numpy_subnormals(tmp_path, mnist):
    xtr, _, xte, _ = mnist
    m = vae.train(xtr, xte, run_dir=tmp_path / "r", **SMALL)
    m.encode(xte[:5])
    tiny = np.float32(1e-38)
    assert tiny / np.float32(100) > 0, "the interpreter's thread must keep IEEE subnormals"


def test_trainer_steps_epochs_and_resumes(tmp_path, mnist, cli):
    xtr, _, xte, _ = mnist
    opts = dict(SMALL, epochs=2)
    whole = vae.train(xtr, xte, run_dir=tmp_path / "whole", **opts)
    t = vae.Trainer(xtr, xte, run_dir=tmp_path / "t", **opts)
    assert (tmp_path / "t" / "config.json").is_file()
    assert t.batches_per_epoch == 16 and t.images_per_epoch == 2000 and t.epochs == 2
    first = t.step()
    assert set(first) == {"images", "neg_elbo", "recon", "kl", "objective"} and first["images"] == 128
    for _ in range(4):
        t.step()
    assert t.position == (0, 5)
    t.checkpoint()
    # vae-train continues the Trainer's checkpoint exactly where it stood.
    cli("train", "--resume", tmp_path / "t", "--epochs", 2)
    resumed = vae.load(tmp_path / "t")
    np.testing.assert_array_equal(resumed.reconstruct(xte), whole.reconstruct(xte))
    # And the Trainer itself, epoch by epoch, is the same run.
    while t.step() is not None:
        pass
    m1 = t.end_epoch()
    m2 = t.epoch()
    assert [m1["epoch"], m2["epoch"]] == [1, 2] and t.position == (2, 0)
    assert m2["test_neg_elbo"] == whole.metrics[1]["test_neg_elbo"]
    np.testing.assert_array_equal(t.model.reconstruct(xte), whole.reconstruct(xte))
    # Resumed from Python, and iterated.
    t2 = vae.Trainer(xtr, xte, resume=tmp_path / "t", epochs=3)
    assert t2.position == (2, 0) and [m["epoch"] for m in t2] == [3]


def test_from_a_data_path_and_the_time_budget(tmp_path):
    m = vae.train(data=vae_data(), subset=500, run_dir=tmp_path / "r", **SMALL)
    assert m.input_shape == [28, 28] and m.config["data"]["subset"] == 500
    m = vae.train(data=vae_data(), subset=500, run_dir=tmp_path / "b", time_budget=1e-3, **{**SMALL, "epochs": 5})
    assert len(m.metrics) == 0 and (tmp_path / "b" / "training_state.safetensors").is_file()


def vae_data():
    from conftest import MNIST
    return MNIST


def test_on_epoch_stops_or_raises(tmp_path, mnist):
    xtr, _, xte, _ = mnist
    m = vae.train(xtr, xte, run_dir=tmp_path / "a", on_epoch=lambda d: d["epoch"] < 2, **{**SMALL, "epochs": 5})
    assert len(m.metrics) == 2

    class Mine(Exception):
        pass

    def boom(d):
        raise Mine("from on_epoch")

    with pytest.raises(Mine, match="from on_epoch"):
        vae.train(xtr, xte, run_dir=tmp_path / "b", on_epoch=boom, **{**SMALL, "epochs": 3})
    assert vae.load(tmp_path / "b").metrics[0]["epoch"] == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_table_run_loads_in_the_table_units(tmp_path, cli):
    r = np.random.default_rng(1)
    a = 100 + 20 * r.random(400)
    np.savetxt(tmp_path / "t.csv", np.c_[a, 2 * a + r.random(400), -a + r.random(400)], delimiter=",",
               header="a,b,c", comments="", fmt="%.4f")
    run = tmp_path / "table"
    cli("--data", tmp_path / "t.csv", "--epochs", 3, "--hidden", 16, "--latent", 1, "--threads", 2, "--run-dir", run)
    cli("reconstruct", "--run-dir", run, "--n", 8, "--csv", tmp_path / "r.csv", "--inputs-csv", tmp_path / "in.csv")
    m = vae.load(run)
    assert m.columns == ["a", "b", "c"] and m.input_shape == [3] and m.likelihood == "gaussian-learned"
    rows = np.loadtxt(tmp_path / "in.csv", delimiter=",", skiprows=1, dtype=np.float32)
    want = np.loadtxt(tmp_path / "r.csv", delimiter=",", skiprows=1, dtype=np.float32)
    np.testing.assert_allclose(m.reconstruct(rows), want, rtol=1e-5, atol=1e-3)
    assert m.sample(4, seed=0).shape == (4, 3) and np.all(m.sample(50, seed=0)[:, 0] > 50), "in the table's units"
    with pytest.raises(ValueError, match="not finite"):
        m.encode(np.full((1, 3), np.nan))


def test_threads_share_a_model_and_a_trainer(tmp_path, mnist):
    """Calls from several threads at once take turns (the GIL is released while computing,
    and no lock is held while waiting for it): no deadlock, the same results."""
    import threading

    xtr, _, xte, _ = mnist
    m = vae.train(xtr, xte, run_dir=tmp_path / "m", **SMALL)
    want = m.reconstruct(xte[:50])
    t = vae.Trainer(xtr, xte, run_dir=tmp_path / "t", **{**SMALL, "epochs": 3})
    failures = []

    def use_model():
        try:
            for _ in range(30):
                np.testing.assert_array_equal(m.reconstruct(xte[:50]), want)
                m.num_parameters
        except Exception as e:  # reported below
            failures.append(e)

    def train():
        try:
            for _ in range(2):
                t.epoch()
        except Exception as e:
            failures.append(e)

    def watch():
        for _ in range(200):
            t.position
            t.lr

    threads = [threading.Thread(target=f) for f in (use_model, use_model, train, watch)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a thread is stuck"
    assert failures == []
    assert t.position == (2, 0)


def test_a_conv_model_from_python_is_the_command_lines(tmp_path, mnist, cli):
    """arch= is --arch: a conv model trains from arrays, reconstructs as vae-train does, and
    an architecture that does not fit is refused with the command line's message."""
    xtr, _, xte, _ = mnist
    m = vae.train(xtr[:512], xte[:64], run_dir=tmp_path / "conv", arch="conv:4k3s2,8k3s2", hidden=(16,), latent=2,
                  epochs=1, threads=2)
    mu, logvar = m.encode(xte[:8])
    assert mu.shape == logvar.shape == (8, 2)
    assert m.decode(mu).shape == (8, 28, 28)
    cli("reconstruct", "--run-dir", tmp_path / "conv", "--n", 8, "--csv", tmp_path / "r.csv")
    np.testing.assert_array_equal(m.reconstruct(xte[:8]).reshape(8, -1), read_csv(tmp_path / "r.csv"))
    with pytest.raises(ValueError, match=r"^arch layer 3 \(8k15s1p0\) does not fit its 8x10x10 input"):
        vae.train(xtr[:64], run_dir=tmp_path / "bad", arch="conv:4k3s2,8k5s1p0,8k15s1p0", epochs=1)


def test_a_vampprior_model_with_a_time_schedule_from_python(tmp_path, mnist, cli):
    """prior= is --prior and lr_schedule="cosine-time:..." anneals over training seconds: a
    two-level VampPrior model trains until its seconds are spent, stores its pseudo-inputs,
    samples, and scores as vae-train does."""
    xtr, _, xte, _ = mnist
    run = tmp_path / "vamp"
    m = vae.train(xtr[:512], xte[:64], run_dir=run, hidden=(16,), latent=(4, 2), upper_hidden=(8,),
                  prior="vamp:7", objective="iwae", samples=3, dreg=True,
                  lr_schedule="cosine-time:2s", epochs=100000, threads=2)
    epochs = len(open(run / "metrics.csv").read().splitlines()) - 1
    assert 1 <= epochs < 100000
    assert m.sample(4, seed=1).shape == (4, 28, 28)
    cli("score", "--run-dir", run, "--method", "iwae", "--k", 4, "--seed", 3)
    scores = np.loadtxt(run / "scores.csv", delimiter=",", skiprows=1, usecols=2)  # no labels: column 1 is empty
    np.testing.assert_allclose(-m.log_likelihood(xte[:64], k=4, seed=3), scores, atol=2e-6, rtol=0)
    with pytest.raises(ValueError, match="prior"):
        vae.train(xtr[:64], run_dir=tmp_path / "bad", prior="vamp:0", epochs=1)


def test_classes_by_name_in_a_table(tmp_path, cli):
    # 300 rows, 15 of them (5%) malignant: the stratified test split holds 2 of them.
    rng = np.random.default_rng(1)
    a = 100 + 20 * rng.standard_normal(300)
    rows = np.stack([a, 2 * a + rng.standard_normal(300), -a + rng.standard_normal(300)], 1)
    kind = np.where(np.arange(300) % 20 == 0, "malignant", "benign")
    rows[kind == "malignant", 1] = 200 + 40 * rng.standard_normal(15)
    csv = tmp_path / "cells.csv"
    csv.write_text("a,b,c,kind\n" + "".join(f"{x:.3f},{y:.3f},{z:.3f},{k}\n" for (x, y, z), k in zip(rows, kind)))
    small = dict(data=csv, label_column="kind", hidden=(8,), latent=1, epochs=1, threads=1, batch_size=32)
    m = vae.train(exclude_label="malignant", run_dir=tmp_path / "a", **small)
    assert m.config["data"]["exclude_label"] == "malignant"
    assert m.config["data"]["split"] == "stratified"
    # The old keyword is still taken, and a number names the same class.
    old = vae.train(exclude_digit=1, run_dir=tmp_path / "b", **small)
    assert old.config["data"]["exclude_label"] == 1
    np.testing.assert_array_equal(m.metrics[-1]["test_neg_elbo"], old.metrics[-1]["test_neg_elbo"])
    out = cli("score", "--run-dir", tmp_path / "a", "--anomaly-label", "malignant", "--k", 2).stdout
    assert "AUROC for detecting label malignant as an anomaly: " in out
    labels = np.loadtxt(tmp_path / "a" / "scores.csv", delimiter=",", skiprows=1)[:, 1]
    assert (len(labels), int((labels == 1).sum())) == (31, 2)
    with pytest.raises(ValueError, match=r"no class is named cyst \(classes: 0 benign, 1 malignant\)"):
        vae.train(exclude_label="cyst", run_dir=tmp_path / "c", **small)
    # The AUROC in Python, with the labels as names or as numbers.
    auc = m.auroc(rows, kind, anomaly_label="malignant", k=2)
    assert auc == m.auroc(rows, (kind == "malignant").astype(np.uint8), anomaly_label=1, k=2)
    assert 0.5 < auc <= 1.0
    with pytest.raises(ValueError, match=r"anomaly_label=cyst: y must hold rows of label cyst and of others"):
        m.auroc(rows, kind, anomaly_label="cyst")
