"""Ctrl-C and SIGTERM during training: the checkpoint first, then the exception (or, for a
SIGTERM left at its default, the end of the process), and the run resumes exactly."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import vae
from conftest import SMALL


def send_later(sig, seconds):
    t = threading.Timer(seconds, os.kill, (os.getpid(), sig))
    t.start()
    return t


def test_ctrl_c_raises_keyboard_interrupt_after_the_checkpoint(tmp_path, mnist, cli):
    xtr, _, xte, _ = mnist
    run = tmp_path / "r"
    timers = []

    def arm(_metrics):
        # Sent once training runs (its handlers are in place), while it is inside the engine.
        if not timers:
            timers.append(send_later(signal.SIGINT, 0.3))

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt) as e:
        vae.train(xtr, xte, run_dir=run, on_epoch=arm, **{**SMALL, "epochs": 100000})
    timers[0].join()
    assert time.monotonic() - started < 20
    assert isinstance(e.value, vae.Interrupted)
    assert e.value.signal == "SIGINT" and e.value.run_dir == run
    assert "checkpoint saved in" in str(e.value)
    assert (run / "training_state.safetensors").is_file()
    # Python's own handler is back: Ctrl-C outside training is a plain KeyboardInterrupt.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    # The run resumes from Python and from the command line.
    done = vae.load(run).config["training"]
    state = vae.Trainer(xtr, xte, resume=run, epochs=100000)
    epochs, batches = state.position
    assert epochs > 0 or batches > 0
    del state
    m = vae.train(xtr, xte, resume=run, epochs=epochs + 1)
    assert len(m.metrics) == epochs + 1
    cli("train", "--resume", run, "--epochs", epochs + 2)
    assert len(vae.load(run).metrics) == epochs + 2
    assert done["epochs"] == 100000


def test_trainer_epoch_is_interrupted_too(tmp_path, mnist):
    xtr, _, xte, _ = mnist
    # 200,000 images: an epoch of several seconds even on a fast core (80,000 took about 0.5 s
    # on an Emerald Rapids Xeon, so the signal could come after the epoch had ended).
    big = np.concatenate([xtr] * 100)
    t = vae.Trainer(big, xte, run_dir=tmp_path / "t", **SMALL)
    timer = send_later(signal.SIGINT, 0.2)
    with pytest.raises(vae.Interrupted):
        t.epoch()
    timer.join()
    epochs, batches = t.position
    assert epochs == 0 and 0 < batches < t.batches_per_epoch
    assert (tmp_path / "t" / "training_state.safetensors").is_file()
    # Training goes on afterwards.
    assert t.epoch()["epoch"] == 1


def test_sigterm_checkpoints_then_ends_the_process(tmp_path, cli):
    script = textwrap.dedent(
        f"""
        import numpy as np, sys, vae
        x = np.random.default_rng(0).random((2000, 784), dtype=np.float32)
        print("training", flush=True)
        vae.train(x, run_dir={str(tmp_path / 'r')!r}, hidden=(64,), latent=8, epochs=100000, threads=2)
        print("not reached", flush=True)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "training"
    time.sleep(2.0)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGTERM, (p.returncode, out)
    assert "not reached" not in out
    assert (tmp_path / "r" / "training_state.safetensors").is_file()
    cli("train", "--resume", tmp_path / "r", "--epochs", len(vae.load(tmp_path / "r").metrics) + 1)
