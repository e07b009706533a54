"""Generated problems: pure functions of (seed, sizes)."""

from __future__ import annotations

from dataclasses import replace

import torch

from node_lab.datasets.base import Data, Dataset, Split, Task
from node_lab.errors import ConfigError, check_number


class CompactParity(Dataset):
    """x ↦ −x on {−1, 1} (the 1-D "crossing trajectories" map g(1) = −1, g(−1) = 1).

    A first-order NODE cannot represent it (flows are homeomorphisms that keep order); ANODE and
    SONODE can. The two points are the training, validation and test set (they are the whole domain).
    """

    task = Task.regression
    data_dim = 1
    output_dim = 1

    def load(self) -> Data:
        x = torch.tensor([[1.0], [-1.0]])  # (2, 1)
        split = Split(x=x, y=-x)
        return Data(task=self.task, train=split, val=split, test=split, loss="mse", output_dim=1)


def _sample_shell(n: int, dim: int, r_lo: float, r_hi: float, g: torch.Generator) -> torch.Tensor:
    """n points uniform (by volume) in {r_lo <= |x| <= r_hi} ⊂ R^dim."""
    direction = torch.randn(n, dim, generator=g, dtype=torch.float64)
    direction = direction / direction.norm(dim=1, keepdim=True)
    u = torch.rand(n, 1, generator=g, dtype=torch.float64)
    radius = (r_lo**dim + u * (r_hi**dim - r_lo**dim)) ** (1.0 / dim)
    return (direction * radius).float()


class NestedSpheres(Dataset):
    """Inner ball |x| <= r vs outer annulus r1 <= |x| <= r2 in any dimension, labels ±1.

    **Arguments:** ``dim``; ``n_train``/``n_val``/``n_test`` points (a fraction ``inner_fraction``
    of them in the ball; validation points from their own random stream); ``inner_radius``;
    ``outer_radii`` [r1, r2]; ``inner_label`` (±1; the outer label is its negative). Trained with
    MSE on the labels; accuracy by sign.
    """

    task = Task.classification
    output_dim = 1

    def __init__(
        self,
        dim: int = 2,
        n_train: int = 300,
        n_test: int = 300,
        inner_fraction: float = 1 / 3,
        inner_radius: float = 0.5,
        outer_radii: tuple[float, float] = (1.0, 1.5),
        inner_label: int = -1,
        n_val: int = 300,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        check_number("dim", dim, kind=int, low=1)
        check_number("n_train", n_train, kind=int, low=2)
        check_number("n_val", n_val, kind=int, low=2)
        check_number("n_test", n_test, kind=int, low=2)
        check_number("inner_fraction", inner_fraction, low=0, low_open=True, high=1)
        check_number("inner_radius", inner_radius, low=0, low_open=True)
        r1, r2 = list(outer_radii)
        if not inner_radius < r1 < r2:
            raise ConfigError("outer_radii", [r1, r2], "needs inner_radius < r1 < r2",
                              fix=f"e.g. dataset.outer_radii=[{2 * inner_radius:g},{3 * inner_radius:g}]")
        if inner_label not in (-1, 1):
            raise ConfigError("inner_label", inner_label, "must be ±1", choices=[-1, 1])
        self.data_dim = dim
        self.n_train, self.n_val, self.n_test = n_train, n_val, n_test
        self.inner_fraction = inner_fraction
        self.inner_radius, self.outer_radii = inner_radius, (r1, r2)
        self.inner_label = inner_label

    def _split(self, n: int, g: torch.Generator) -> Split:
        n_in = max(1, round(n * self.inner_fraction))
        inner = _sample_shell(n_in, self.data_dim, 0.0, self.inner_radius, g)
        outer = _sample_shell(n - n_in, self.data_dim, *self.outer_radii, g)
        x = torch.cat([inner, outer])
        y = torch.cat([torch.full((n_in, 1), float(self.inner_label)),
                       torch.full((n - n_in, 1), float(-self.inner_label))])
        perm = torch.randperm(n, generator=g)
        return Split(x=x[perm], y=y[perm])

    def load(self) -> Data:
        g = self.generator()
        train = self._split(self.n_train, g)
        test = self._split(self.n_test, g)
        val = self._split(self.n_val, self.generator("val"))
        return Data(task=self.task, train=train, val=val, test=test, loss="mse", output_dim=1)


class Sine(Dataset):
    """A 1-D time series y(t) = A sin(ωt) + noise on [0, t_end], fitted by one trajectory from
    the clean y(0). Training sees the first ``train_fraction`` of the points; the test metric is
    the extrapolation over the rest. Validation: the training window observed again, with its own
    noise draw (the validation stream; without noise it is the training points). The true velocity
    Aω cos(ωt) is known.
    """

    task = Task.trajectory
    data_dim = 1
    output_dim = 1
    has_velocity = True

    def __init__(
        self,
        n_points: int = 50,
        t_end: float = 10.0,
        amplitude: float = 1.0,
        frequency: float = 1.0,
        noise: float = 0.0,
        train_fraction: float = 0.7,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        check_number("n_points", n_points, kind=int, low=3)
        check_number("t_end", t_end, low=0, low_open=True)
        check_number("noise", noise, low=0)
        check_number("train_fraction", train_fraction, low=0, low_open=True, high=1)
        self.n_points, self.t_end = n_points, t_end
        self.amplitude, self.frequency = amplitude, frequency
        self.noise = noise
        self.n_train = max(2, int(round(n_points * train_fraction)))

    def load(self) -> Data:
        g = self.generator()
        times = torch.linspace(0.0, self.t_end, self.n_points)
        clean = self.amplitude * torch.sin(self.frequency * times)
        vel = self.amplitude * self.frequency * torch.cos(self.frequency * times)
        y = (clean + self.noise * torch.randn(self.n_points, generator=g))[:, None, None]  # (T, 1, 1)
        velocity = vel[:, None, None]
        x0 = clean[:1, None]  # (1, 1): the clean initial value
        v0 = velocity[0]
        k = self.n_train
        train = Split(x=x0, y=y[:k], v0=v0, velocity=velocity[:k], times=times[:k])
        val_y = clean[:k, None, None] + self.noise * torch.randn(k, 1, 1, generator=self.generator("val"))
        val = replace(train, y=val_y)
        observed = torch.arange(self.n_points) >= k if k < self.n_points else None
        test = Split(x=x0, y=y, v0=v0, velocity=velocity, times=times, observed=observed)
        return Data(task=self.task, train=train, val=val, test=test, loss="mse", output_dim=1)


CURVES = {"sin": torch.sin, "sin_plus_x": lambda x: torch.sin(x) + x}


class SineCurve(Dataset):
    """A planar curve (x, f(x)) with f = sin or sin + x, fitted as one 2-D trajectory
    z(t) = (x(t), y(t)) from z(0) = (0, 0) with t = x (the 18.337 ANODE study, §4.1: a 2-D NODE
    cannot follow it where the curve's trajectories would have to cross).

    **Arguments:** ``curve`` (sin | sin_plus_x); ``n_points`` on [0, ``x_end``]; ``noise``: std of
    Gaussian noise on y. All points are both training and test set (a fit, not a forecast); the
    validation split is the same curve with its own noise draw (the validation stream).
    """

    task = Task.trajectory
    data_dim = 2
    output_dim = 2

    def __init__(self, curve: str = "sin", n_points: int = 100, x_end: float = 6.283185307179586,
                 noise: float = 0.05, seed: int = 0) -> None:
        super().__init__(seed)
        if curve not in CURVES:
            raise ConfigError("curve", curve, "unknown curve", choices=list(CURVES))
        check_number("n_points", n_points, kind=int, low=2)
        check_number("x_end", x_end, low=0, low_open=True)
        check_number("noise", noise, low=0)
        self.curve, self.n_points, self.x_end, self.noise = curve, n_points, x_end, noise

    def load(self) -> Data:
        times = torch.linspace(0.0, self.x_end, self.n_points)

        def observed(g: torch.Generator) -> Split:
            y = CURVES[self.curve](times) + self.noise * torch.randn(self.n_points, generator=g)
            return Split(x=torch.zeros(1, 2), y=torch.stack([times, y], dim=1)[:, None, :], times=times)  # (T, 1, 2)

        split = observed(self.generator())
        return Data(task=self.task, train=split, val=observed(self.generator("val")), test=split, loss="mse",
                    output_dim=2)
