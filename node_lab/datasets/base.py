"""The dataset contract every `dataset/` option meets.

A dataset option is a class whose constructor takes the YAML's keys, checks them cheaply (no
loading, so a sweep can be validated before any job starts) and declares what the task is;
:meth:`Dataset.load` then builds the tensors from an explicit seed (generated data) or from a
path under ``paths.data_dir`` (files).

Tensor layout (B = samples, d = data dims, T = time points):

- ``classification``: ``x`` (B, d, …) → ``y`` (B,) integer classes (cross-entropy), or
  (B, 1) ±1 labels (MSE on the labels, accuracy by sign).
- ``regression``: ``x`` (B, d) → end state ``y`` (B, out), MSE.
- ``trajectory``: initial state ``x`` (B, d) at ``times[0]`` → ``y`` (T, B, out) at ``times``; MSE
  over the time points marked ``observed``.

Every dataset has three splits: ``train``, ``val`` (model selection: the best checkpoint is
chosen on it, never on test) and ``test``. Generated problems draw the validation split from
their own random stream (:meth:`Dataset.generator` with ``stream="val"``), so train and test are
the draws they were before validation splits existed; image sets hold out part of the training
file; trajectory tasks observe a documented window (see each dataset).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum

import torch

from node_lab.errors import ConfigError


class Task(str, Enum):
    classification = "classification"
    regression = "regression"
    trajectory = "trajectory"


@dataclass
class Split:
    """One split. ``v0``: known true initial velocity (B, d); ``velocity``: true velocity along
    the trajectory (T, B, d); ``times``: (T,) grid of trajectory tasks; ``observed``: (T,) bool,
    the points that count in loss and metrics (None: all)."""

    x: torch.Tensor
    y: torch.Tensor
    v0: torch.Tensor | None = None
    velocity: torch.Tensor | None = None
    times: torch.Tensor | None = None
    observed: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, index: torch.Tensor) -> Split:
        """Rows ``index`` of every per-sample tensor (trajectories are indexed on dim 1)."""
        traj = self.times is not None
        return replace(
            self,
            x=self.x[index],
            y=self.y[:, index] if traj else self.y[index],
            v0=None if self.v0 is None else self.v0[index],
            velocity=None if self.velocity is None else self.velocity[:, index],
        )

    def to(self, device: torch.device, dtype: torch.dtype) -> Split:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            return t.to(device, dtype) if t.is_floating_point() else t.to(device)

        return Split(*(move(getattr(self, f)) for f in ("x", "y", "v0", "velocity", "times", "observed")))


class Forcing:
    """A sampled input signal u(t), linearly interpolated with torch ops on the time tensor
    (no Python or numpy per evaluation). ``outside``: ``zero`` or ``clamp`` beyond the samples."""

    def __init__(self, times: torch.Tensor, values: torch.Tensor, outside: str = "zero") -> None:
        if outside not in ("zero", "clamp"):
            raise ConfigError("forcing_outside", outside, "unknown choice", choices=["zero", "clamp"])
        self.times = times  # (N,) increasing
        self.values = values if values.dim() == 2 else values[:, None]  # (N, k)
        self.outside = outside

        # One row per segment, found by one searchsorted: [t_lo, u(t_lo) (k), slope (k)], so that
        # u(t) = u_lo + (t - t_lo) * slope is one gather, one sub and one addcmul per evaluation.
        # Segment 0 is t < t_0, 1..N-1 are [t_{i-1}, t_i), N is the last knot itself (up to the next
        # float), N+1 is beyond: constant (0 or the end value, per ``outside``) with slope 0.
        ts, vs = self.times, self.values
        edge = torch.zeros_like(vs[:1]) if outside == "zero" else None
        slope = (vs[1:] - vs[:-1]) / (ts[1:] - ts[:-1])[:, None]
        flat = torch.zeros_like(vs[:1])
        rows_v = [vs[:1] if edge is None else edge, vs[:-1], vs[-1:], vs[-1:] if edge is None else edge]
        rows_s = [flat, slope, flat, flat]
        t_lo = torch.cat([ts[:1], ts[:-1], ts[-1:], ts[-1:]])
        self._knots = torch.cat([ts, torch.nextafter(ts[-1:], torch.full_like(ts[-1:], math.inf))])
        self._table = torch.cat([t_lo[:, None], torch.cat(rows_v), torch.cat(rows_s)], dim=1)  # (N+2, 1+2k)
        self._k = vs.shape[1]

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        """u(t) for a scalar time tensor → (k,)."""
        row = self._table[torch.searchsorted(self._knots, t.reshape(1).to(self._knots.dtype), right=True)][0]
        k = self._k
        return torch.addcmul(row[1 : 1 + k], t.to(row.dtype) - row[0], row[1 + k :])

    def to(self, device: torch.device, dtype: torch.dtype) -> Forcing:
        return Forcing(self.times.to(device, dtype), self.values.to(device, dtype), self.outside)


@dataclass
class Data:
    """What :meth:`Dataset.load` returns. ``val``: the model-selection split (None only for a
    dataset written before validation splits: the job then selects on ``train`` and says so)."""

    task: Task
    train: Split
    test: Split
    loss: str  # "mse" | "cross_entropy"
    output_dim: int
    val: Split | None = None
    forcing: Forcing | None = None
    # physical systems: the true energy of states (..., d) -> (...), and the divisor of the
    # relative energy drift; when set, the job adds rollout and energy metrics (node_lab/physics.py)
    energy: Callable[[torch.Tensor], torch.Tensor] | None = None
    energy_scale: float | None = None
    # a random transform of every training batch's x, drawn from the training loop's generator
    # (e.g. the random crops of images, :class:`node_lab.datasets.images.RandomCrop`); never on test
    train_transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    # further named evaluation splits (e.g. a trajectory's far ``extension``): the job reports each
    # as final.<name>_<metric> beside the test metric, without training or divergence checks on it
    extra: dict[str, Split] = field(default_factory=dict)

    @property
    def data_dim(self) -> int:
        return self.train.x.shape[1]


class Dataset:
    """Base of every dataset option. Subclasses set ``task``, ``data_dim``, ``output_dim``,
    ``loss`` and ``has_velocity`` in ``__init__`` (cheap) and implement :meth:`load`."""

    task: Task
    data_dim: int
    output_dim: int
    data_shape: tuple | None = None  # per-sample shape when not (data_dim,), e.g. images (C, H, W)
    loss: str = "mse"
    has_velocity: bool = False
    has_forcing: bool = False

    def __init__(self, seed: int = 0) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError("seed", seed, "must be an integer")
        self.seed = seed

    def generator(self, stream: str | None = None) -> torch.Generator:
        """The dataset's random stream from ``seed``; a named ``stream`` (``"val"``) is another,
        independent one, so drawing a new split leaves the draws of the others unchanged."""
        if stream is None:
            return torch.Generator().manual_seed(self.seed)
        digest = hashlib.sha256(f"{self.seed}/{stream}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    def load(self) -> Data:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__
