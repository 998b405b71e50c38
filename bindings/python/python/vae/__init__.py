"""Variational autoencoders on the CPU, trained and used from NumPy.

The engine of ``vae-train`` (a from-scratch Rust engine) as a Python package: ``train`` runs
the command line's training session on arrays (or on any data path ``vae-train`` reads),
``Trainer`` trains batch by batch or epoch by epoch, ``load`` reads a run directory, and a
``Model`` encodes, decodes, samples, reconstructs and scores arrays.

Every training option is a keyword named as the flag of ``vae-train train`` (``--batch-size``
is ``batch_size``), read and checked by the command line's own parser and recipe, with its
defaults; a run trained here is an ordinary run directory that every ``vae-train`` command
reads, and the reverse.

Arrays: ``uint8`` (read as p / 255) or ``float32``/``float64`` in [0, 1], ``N x D`` rows (in
the engine's order: channels first) or ``N x H x W`` / ``N x H x W x C`` images (channels
last, as NumPy and Keras hold them); they are copied once into the engine's layout.
"""

import inspect
import os

from . import _vae
from ._vae import Interrupted, Model, __version__

__all__ = ["train", "Trainer", "load", "Model", "Interrupted", "options", "__version__"]

# (keyword, help with the command line's default, switch) of every flag of `vae-train train`.
_OPTIONS = [(k, h, s) for k, h, s in _vae.train_options()]
_SWITCHES = {k for k, _, s in _OPTIONS if s}
_NAMES = [k for k, _, _ in _OPTIONS]
# Older spellings still taken (``exclude_digit`` is ``exclude_label``).
_ALIASES = dict(_vae.train_aliases())


def options():
    """The training keywords as ``{keyword: help}``, each help as ``vae-train train --help``
    gives it (with its default)."""
    return {k: h for k, h, _ in _OPTIONS}


def _value(keyword, v):
    """A keyword's value as the command line would spell it."""
    if isinstance(v, bool):
        raise TypeError(f"{keyword} takes a value, not {v!r}")
    if isinstance(v, (str, os.PathLike)):
        return os.fspath(v)
    if isinstance(v, (list, tuple)) or (hasattr(v, "ndim") and getattr(v, "ndim", 0) == 1):
        return ",".join(_value(keyword, x) for x in v)
    if hasattr(v, "__index__"):
        return str(v.__index__())
    if isinstance(v, float) or hasattr(v, "__float__"):
        return repr(float(v))
    raise TypeError(f"{keyword}: cannot take {v!r} ({type(v).__name__})")


def _words(function, options):
    """The keywords given (not None) as command-line words."""
    words = []
    for keyword, v in options.items():
        keyword = _ALIASES.get(keyword, keyword)
        if keyword not in _NAMES:
            raise TypeError(f"{function}() got an unexpected keyword argument '{keyword}'")
        if v is None:
            continue
        flag = "--" + keyword.replace("_", "-")
        if keyword in _SWITCHES:
            if v not in (True, False):
                raise TypeError(f"{keyword} takes True or False, not {v!r}")
            if v:
                words.append(flag)
        elif isinstance(v, (list, tuple)) and len(v) == 0:
            words.append(flag)
        else:
            words.append(f"{flag}={_value(keyword, v)}")
    return words


def _data_args(function, x_train):
    if isinstance(x_train, (str, os.PathLike)):
        raise TypeError(f"{function}(): x_train is an array; give a path as data={os.fspath(x_train)!r}")


def train(x_train=None, x_test=None, *, y_train=None, y_test=None, on_epoch=None, verbose=False, **options):
    """Trains a VAE as ``vae-train train`` does and returns the trained ``Model``.

    x_train, x_test: arrays of images or rows (see the module's help); without x_test a
    seeded share (``test_fraction``) is set aside, as for a ``.npy``. y_train, y_test: labels
    (integers 0-255), optional (``exclude_label`` needs them; with them the test share is
    drawn from each class in proportion unless ``split="random"``). The arrays are kept in the run
    directory as ``data.npz``, so that every ``vae-train`` command reads the run. Without
    arrays, ``data`` (a path, as ``--data``) or the command line's default data is used.

    on_epoch(metrics): called after each epoch's checkpoint with a dict of the epoch's
    figures (the columns of ``metrics.csv``, plus ``images`` and ``img_per_s``); returning
    False stops training there (as a finished run). verbose: print the command line's
    progress to the process's stdout/stderr.

    Ctrl-C (SIGINT), SIGTERM and SIGHUP finish the current batch, save a checkpoint and then
    raise ``vae.Interrupted`` (a ``KeyboardInterrupt``; ``resume=run_dir`` continues
    exactly); a SIGTERM or SIGHUP whose disposition was the default one then ends the
    process as it would have.

    Keywords (the flags of ``vae-train train``; None leaves the command line's default):
    """
    _data_args("train", x_train)
    return _vae.train(_words("train", options), x_train, x_test, y_train, y_test, on_epoch, bool(verbose))


class Trainer:
    """A run trained batch by batch (``step``) or epoch by epoch (``epoch``, or iterate).

    Takes the arrays and keywords of ``train`` (except ``time_budget``); the run directory
    gets ``config.json`` at once, and a checkpoint and ``metrics.csv`` at every
    ``end_epoch`` and ``checkpoint()``, so that ``vae-train`` and ``Trainer(resume=...)``
    continue it exactly.
    """

    def __init__(self, x_train=None, x_test=None, *, y_train=None, y_test=None, **options):
        _data_args("Trainer", x_train)
        self._t = _vae.Trainer(_words("Trainer", options), x_train, x_test, y_train, y_test)

    def step(self):
        """Trains the next batch; returns its figures per image (``images``, ``neg_elbo``,
        ``recon``, ``kl``, ``objective``), or None when the epoch has no batch left (then
        call ``end_epoch``)."""
        return self._t.step()

    def end_epoch(self):
        """Evaluates on the test split, records and checkpoints the epoch; returns its
        metrics (the columns of ``metrics.csv``)."""
        return self._t.end_epoch()

    def epoch(self):
        """Trains the rest of the epoch and ends it; returns its metrics. A signal stops it
        after the batch with a checkpoint and raises ``vae.Interrupted``."""
        return self._t.epoch()

    def checkpoint(self):
        """Writes the checkpoint now (also mid-epoch) and ``metrics.csv``."""
        self._t.checkpoint()

    def __iter__(self):
        """Epoch after epoch until ``epochs`` are done, yielding each one's metrics."""
        while self.position[0] < self.epochs:
            yield self.epoch()

    @property
    def model(self):
        """The model as it is now (a copy)."""
        return self._t.model

    @property
    def position(self):
        """``(epochs_done, batches_done)``."""
        return self._t.position

    @property
    def metrics(self):
        """One dict per epoch ended."""
        return self._t.metrics

    @property
    def epochs(self):
        """The epochs the recipe asks for."""
        return self._t.epochs

    @property
    def batches_per_epoch(self):
        return self._t.batches_per_epoch

    @property
    def images_per_epoch(self):
        return self._t.images_per_epoch

    @property
    def lr(self):
        """The current epoch's learning rate."""
        return self._t.lr

    @property
    def kl_weight(self):
        """The KL weight of the last batch."""
        return self._t.kl_weight

    @property
    def run_dir(self):
        return self._t.run_dir

    def __repr__(self):
        e, b = self.position
        return f"<vae.Trainer {self.run_dir} at epoch {e} batch {b} of {self.epochs} epochs>"


def load(run_dir, threads=None):
    """The model of a run directory (trained by ``vae-train`` or from Python); ``threads``
    for its computations (every core if None)."""
    return _vae.load(os.fspath(run_dir), threads)


def _keywords_doc():
    lines = []
    for k, h, _ in _OPTIONS:
        lines.append(f"    {k}: {' '.join(h.split())}")
    return "\n".join(lines)


def _signature(fixed):
    params = list(fixed)
    params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None) for k in _NAMES]
    return inspect.Signature(params)


_P = inspect.Parameter
train.__doc__ += "\n" + _keywords_doc() + "\n"
train.__signature__ = _signature(
    [
        _P("x_train", _P.POSITIONAL_OR_KEYWORD, default=None),
        _P("x_test", _P.POSITIONAL_OR_KEYWORD, default=None),
        _P("y_train", _P.KEYWORD_ONLY, default=None),
        _P("y_test", _P.KEYWORD_ONLY, default=None),
        _P("on_epoch", _P.KEYWORD_ONLY, default=None),
        _P("verbose", _P.KEYWORD_ONLY, default=False),
    ]
)
Trainer.__init__.__signature__ = _signature(
    [
        _P("self", _P.POSITIONAL_OR_KEYWORD),
        _P("x_train", _P.POSITIONAL_OR_KEYWORD, default=None),
        _P("x_test", _P.POSITIONAL_OR_KEYWORD, default=None),
        _P("y_train", _P.KEYWORD_ONLY, default=None),
        _P("y_test", _P.KEYWORD_ONLY, default=None),
    ]
)
Trainer.__doc__ += "\n    Keywords:\n" + _keywords_doc() + "\n"
del _P
