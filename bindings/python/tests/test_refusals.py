"""Every refusal: bad arrays as ValueError with the command line's messages, bad keywords,
file problems as OSError; nothing is written for a refused run."""

import numpy as np
import pytest
import vae
from conftest import SMALL


def cli_reason(cli, tmp_path, array):
    """The command line's message for the same array saved as a .npy."""
    np.save(tmp_path / "bad.npy", array)
    p = cli("inspect", "--data", tmp_path / "bad.npy", check=False)
    assert p.returncode != 0
    return p.stderr.split("bad.npy: ")[-1].strip()


BAD_ARRAYS = [
    ("nan", lambda: np.array([[0.5, np.nan, 0.2]] * 4, np.float32), "value NaN at flat index 1 is outside [0, 1]"),
    ("range", lambda: np.full((4, 3), 1.5), "value 1.5 at flat index 0 is outside [0, 1]"),
    ("shape", lambda: np.zeros((4, 5, 5, 2), np.uint8), "an array of shape [4, 5, 5, 2]"),
    ("rank", lambda: np.zeros(12, np.uint8), "an array of shape [12]"),
    ("empty", lambda: np.zeros((0, 784), np.uint8), "an empty array (shape [0, 784])"),
    ("int64", lambda: np.zeros((4, 3), np.int64), "dtype '<i8' is not supported: integers other than uint8"),
    ("bool", lambda: np.zeros((4, 3), bool), "dtype '|b1' is not supported: booleans"),
    ("complex", lambda: np.zeros((4, 3), np.complex64), "is not supported: complex numbers"),
    ("float16", lambda: np.zeros((4, 3), np.float16), "dtype '<f2' is not supported: this float width"),
]


@pytest.mark.parametrize("name,make,message", BAD_ARRAYS, ids=[b[0] for b in BAD_ARRAYS])
def test_bad_arrays_are_refused_as_the_command_line_refuses_them(tmp_path, cli, name, make, message):
    with pytest.raises(ValueError) as e:
        vae.train(make(), run_dir=tmp_path / "run", **SMALL)
    assert str(e.value).startswith("x_train: ") and message in str(e.value)
    assert str(e.value) == "x_train: " + cli_reason(cli, tmp_path, make())
    assert not (tmp_path / "run").exists(), "nothing is written for refused arrays"


def test_object_arrays_are_refused():
    with pytest.raises(ValueError, match="object arrays hold pickled Python objects"):
        vae.train(np.array([[0.1, "a"]], dtype=object), **SMALL)


def test_bad_labels_and_mismatched_splits(mnist, tmp_path):
    xtr, ytr, xte, yte = mnist
    with pytest.raises(ValueError, match=r"'y_train' has shape \[1999\], expected \[2000\]"):
        vae.train(xtr, xte, y_train=ytr[:-1], y_test=yte, **SMALL)
    with pytest.raises(ValueError, match="'y_train' holds values that are not integers from 0 to 255"):
        vae.train(xtr, xte, y_train=np.full(2000, 300.0), y_test=yte, **SMALL)
    with pytest.raises(ValueError, match="'x_train' holds 28x28 images but 'x_test' holds 14x14"):
        vae.train(xtr, xte[:, ::2, ::2].copy(), **SMALL)
    with pytest.raises(ValueError, match="labels for one split only"):
        vae.train(xtr, xte, y_train=ytr, **SMALL)
    with pytest.raises(ValueError, match="y_test: given without x_test"):
        vae.train(xtr, y_test=yte, **SMALL)
    with pytest.raises(ValueError, match="no test rows"):
        vae.train(xtr, test_fraction=0, run_dir=tmp_path / "r", **SMALL)
    with pytest.raises(ValueError, match=r"^exclude_label=3: no training image has label 3 \(labels present: 0\)"):
        vae.train(xtr, xte, y_train=np.zeros(2000, np.uint8), y_test=yte, exclude_digit=3, run_dir=tmp_path / "x",
                  **SMALL)


@pytest.mark.parametrize(
    "keywords,message",
    [
        (dict(batch_size=0), "batch_size must be at least 1"),
        (dict(lr=-1.0), "lr must be a positive number, got -1"),
        (dict(adam_beta1=1.0), "adam_beta1 must be in [0, 1), got 1"),
        (dict(free_bits=1.0, samples=2), "samples"),
        (dict(latent=(20, 0)), "latent must be at least 1"),
        (dict(activation="nope"), "activation: invalid value 'nope'"),
        (dict(epochs="x"), "epochs: invalid value 'x'"),
        (dict(objective="elbo2"), "objective: invalid value 'elbo2'"),
        (dict(time_budget="soon"), "time_budget: invalid value 'soon'"),
        (dict(lr_schedule="sometimes"), "lr_schedule: invalid value 'sometimes'"),
    ],
)
def test_bad_options_name_the_keyword(mnist, tmp_path, keywords, message):
    xtr, _, xte, _ = mnist
    with pytest.raises(ValueError) as e:
        vae.train(xtr, xte, run_dir=tmp_path / "r", **{**SMALL, **keywords})
    assert message in str(e.value)
    assert "--" not in str(e.value), "keywords, not flags"
    assert not (tmp_path / "r").exists()


def test_free_bits_message_spells_both_keywords(mnist):
    xtr, _, xte, _ = mnist
    with pytest.raises(ValueError, match=r"^free_bits .*samples"):
        vae.train(xtr, xte, free_bits=1.0, samples=2, **SMALL)


def test_keyword_types(mnist):
    xtr, _, xte, _ = mnist
    with pytest.raises(TypeError, match="unexpected keyword argument 'batchsize'"):
        vae.train(xtr, xte, batchsize=10)
    with pytest.raises(TypeError, match="binarize takes True or False"):
        vae.train(xtr, xte, binarize="yes")
    with pytest.raises(TypeError, match="data="):
        vae.train("data/mnist")
    with pytest.raises(TypeError, match="not both"):
        vae.train(xtr, data="data/mnist", **SMALL)


def test_file_problems_are_os_errors(mnist, tmp_path):
    xtr, _, xte, _ = mnist
    vae.train(xtr, xte, run_dir=tmp_path / "r", **SMALL)
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a trained model") as e:
        vae.train(xtr, xte, run_dir=tmp_path / "r", **SMALL)
    # The command line's message, its flags spelt as keywords.
    assert f"choose another run_dir, or continue it with resume={tmp_path / 'r'} (nothing was overwritten)" in str(e.value)
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before, "nothing was overwritten"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vae.load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="holds no model.safetensors"):
        vae.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vae.train(xtr, xte, resume=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no training_state.safetensors: nothing to resume"):
        vae.train(xtr, xte, resume=tmp_path / "empty")
    with pytest.raises(OSError, match="no such file or directory") as e:
        vae.train(data=tmp_path / "missing.npz", run_dir=tmp_path / "m", **SMALL)
    assert "give the data with data=DIR or set VAE_DATA=DIR" in str(e.value)
    # A flipped byte in a tensor is found by its checksum.
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("config.json", "model.safetensors"):
        (bad / f).write_bytes((tmp_path / "r" / f).read_bytes())
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-100] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(OSError, match="checksum|CRC|crc"):
        vae.load(bad)


def test_a_resume_keeps_its_settings(mnist, tmp_path):
    xtr, _, xte, _ = mnist
    vae.train(xtr, xte, run_dir=tmp_path / "r", **SMALL)
    with pytest.raises(ValueError, match=r"^lr .*a resumed run keeps the settings"):
        vae.train(xtr, xte, resume=tmp_path / "r", lr=0.5, epochs=2)


def test_bad_model_inputs(mnist, tmp_path):
    xtr, _, xte, _ = mnist
    m = vae.train(xtr, xte, run_dir=tmp_path / "r", **SMALL)
    with pytest.raises(ValueError, match=r"x: an array of shape \[3, 27, 27\]: the model takes rows N x 784 or images N x 28 x 28"):
        m.encode(np.zeros((3, 27, 27), np.uint8))
    with pytest.raises(ValueError, match="value 2 at flat index 0 is outside"):
        m.reconstruct(np.full((2, 784), 2.0))
    with pytest.raises(ValueError, match=r"z: an array of shape \[2, 7\]: expected latent rows N x 8"):
        m.decode(np.zeros((2, 7)))
    with pytest.raises(ValueError, match="not finite"):
        m.decode(np.full((2, 8), np.inf))
    with pytest.raises(ValueError, match="n must be at least 1"):
        m.sample(0)
    with pytest.raises(ValueError, match="k must be at least 1"):
        m.elbo(xte[:2], k=0)
    with pytest.raises(ValueError, match="method: invalid value 'nll'"):
        m.score(xte[:2], method="nll")
    with pytest.raises(ValueError, match="dtype '<i8'"):
        m.encode(np.zeros((2, 784), np.int64))
    with pytest.raises(ValueError, match="threads must be at least 1"):
        vae.load(tmp_path / "r", threads=0)


def test_a_diverged_run_is_a_floating_point_error(tmp_path):
    x = np.random.default_rng(0).random((1000, 64))
    with pytest.raises(FloatingPointError, match=r"training diverged at epoch 1, batch \d+: .*lr=1e-4") as e:
        vae.train(x, lr=1e9, epochs=3, hidden=(16,), latent=2, likelihood="gaussian:0.000001", run_dir=tmp_path / "d")
    assert "--" not in str(e.value)
