"""Trajectory tasks: dynamical systems observed on time windows, generated or read from files.

:class:`TrajectoryDataset` turns clean curves x(t), v(t) of B trajectories into a task: the time
grid is the union of the ``train_windows`` and ``test_windows`` (each ``[t_start, t_end, n]``,
``n`` evenly spaced points), training fits the train points (with optional Gaussian ``noise`` of
std σ, drawn from the dataset seed) integrating from the clean initial state, and the test metric
is the MSE on the test points against the clean curve (extrapolation, interpolation gaps, or the
train points again when there are no test windows). ``extra_windows`` ({name: windows}) adds named
evaluation splits on the same trajectory, reported as final.<name>_mse (e.g. a far extension).
Validation (model selection): the points of ``val_windows`` (null: the training windows), observed
with their own noise draw from the validation stream (without noise: the clean curve there). To
select on a window the model does not train on, put it between the train and test windows and
leave it out of ``train_windows``. ``fit: position_velocity`` observes both (outputs [x, v]);
``inputs: position_velocity`` starts first-order models from [x0, v0].

Subclasses give the curves: :class:`DampedOscillators` (closed form; sines, the SONODE paper's
2-D and double functions, random oscillators), :class:`Exponential`, :class:`ForcedVanDerPol`
(integrated once, tightly, with a forcing input) and :class:`SystemIdentificationCSV` (measured
input/output records such as silverbox and the F16 ground-vibration test).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from node_lab.datasets.base import Data, Dataset, Forcing, Split, Task
from node_lab.errors import ConfigError, check_choice, check_number

FITS = ["position", "position_velocity"]


def _windows(key: str, windows) -> list[tuple[float, float, int]]:
    out = []
    for w in list(windows or []):
        w = list(w)
        if len(w) != 3 or not (isinstance(w[2], int) and w[2] >= 1) or not float(w[1]) >= float(w[0]):
            raise ConfigError(key, w, "each window is [t_start, t_end, n_points] with t_end >= t_start, n >= 1",
                              fix=f"e.g. dataset.{key}=[[0,10,50]]")
        out.append((float(w[0]), float(w[1]), int(w[2])))
    return out


class TrajectoryDataset(Dataset):
    """Base of the trajectory tasks above. Subclasses set ``data_dim`` and implement
    :meth:`curves` (and :meth:`forcing` if the system has an input)."""

    task = Task.trajectory
    has_velocity = True

    def __init__(
        self,
        train_windows,
        test_windows=(),
        noise: float = 0.0,
        fit: str = "position",
        inputs: str = "position",
        rmse_window: int | None = None,
        extra_windows: dict | None = None,
        val_windows=None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        self.train_windows = _windows("train_windows", train_windows)
        self.test_windows = _windows("test_windows", test_windows)
        self.val_windows = _windows("val_windows", val_windows) if val_windows is not None else None
        if extra_windows is not None and not hasattr(extra_windows, "items"):
            raise ConfigError("extra_windows", extra_windows, "must map a name to a list of windows",
                              fix="e.g. dataset.extra_windows={extension:[[100,199,100]]}")
        self.extra_windows = {str(k): _windows(f"extra_windows.{k}", w) for k, w in (extra_windows or {}).items()}
        if not self.train_windows:
            raise ConfigError("train_windows", train_windows, "needs at least one window", fix="[[0,10,50]]")
        check_number("noise", noise, low=0)
        check_choice("fit", fit, FITS)
        check_choice("inputs", inputs, FITS)
        check_number("rmse_window", rmse_window, kind=int, low=1, allow_none=True)
        self.noise, self.fit, self.inputs, self.rmse_window = noise, fit, inputs, rmse_window

    def _set_dims(self, d: int) -> None:
        self.position_dim = d
        self.data_dim = 2 * d if self.inputs == "position_velocity" else d
        self.output_dim = 2 * d if self.fit == "position_velocity" else d

    # --- subclass interface ------------------------------------------------------------------
    def curves(self, times: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean positions and velocities (T, B, d) at ``times`` (float64)."""
        raise NotImplementedError

    def forcing(self) -> Forcing | None:
        return None

    # --- shared --------------------------------------------------------------------------------
    @staticmethod
    def _points(windows) -> torch.Tensor:
        return torch.cat([torch.linspace(a, b, n, dtype=torch.float64) for a, b, n in windows])

    def load(self) -> Data:
        g = self.generator()
        train_t = self._points(self.train_windows)
        test_t = self._points(self.test_windows) if self.test_windows else train_t
        extra_t = {name: self._points(w) for name, w in self.extra_windows.items()}
        val_t = self._points(self.val_windows) if self.val_windows else train_t
        times = torch.unique(torch.cat([train_t, test_t, val_t, *extra_t.values()]))  # sorted
        x, v = self.curves(times, g)
        target = torch.cat([x, v], dim=2) if self.fit == "position_velocity" else x
        noisy = target + self.noise * torch.randn(target.shape, generator=g, dtype=target.dtype)
        val_noisy = target + self.noise * torch.randn(target.shape, generator=self.generator("val"),
                                                      dtype=target.dtype)
        x0 = torch.cat([x[0], v[0]], dim=1) if self.inputs == "position_velocity" else x[0]
        is_train = torch.isin(times, train_t)
        is_test = torch.isin(times, test_t)
        k = int(is_train.nonzero().max()) + 1  # training integrates up to its last point
        train = Split(x=x0.float(), y=noisy[:k].float(), v0=v[0].float(), velocity=v[:k].float(),
                      times=times[:k].float(), observed=None if bool(is_train[:k].all()) else is_train[:k])
        test = Split(x=x0.float(), y=target.float(), v0=v[0].float(), velocity=v.float(), times=times.float(),
                     observed=None if bool(is_test.all()) else is_test)
        is_val = torch.isin(times, val_t)
        k_val = int(is_val.nonzero().max()) + 1
        val = Split(x=x0.float(), y=val_noisy[:k_val].float(), v0=v[0].float(), velocity=v[:k_val].float(),
                    times=times[:k_val].float(), observed=None if bool(is_val[:k_val].all()) else is_val[:k_val])
        extra = {name: replace(test, observed=torch.isin(times, t)) for name, t in extra_t.items()}
        return Data(task=self.task, train=train, val=val, test=test, loss="mse", output_dim=self.output_dim,
                    forcing=self.forcing(), extra=extra)


class DampedOscillators(TrajectoryDataset):
    """B trajectories of d independent damped oscillators ẍ = −2γẋ − (γ² + ω²)x (closed form).

    **Arguments:** ``gamma``, ``omega``: one value per dim; ``x0``, ``v0``: B×d initial values,
    or ``n_random`` trajectories with x0, v0 ~ U(−init_range, init_range) from the seed. γ = 0
    gives undamped sines: ω = 1, x0 = 0, v0 = 1 is sin t. The SONODE paper's double functions
    (a sin t + b cos t)e^{−t/6} are γ = 1/6, ω = 1, x0 = b, v0 = a − b/6.
    """

    def __init__(self, gamma, omega, x0=None, v0=None, n_random: int = 0, init_range: float = 2.5,
                 **windows) -> None:
        super().__init__(**windows)
        self.gamma = [float(x) for x in gamma]
        self.omega = [float(x) for x in omega]
        d = len(self.gamma)
        if len(self.omega) != d or d == 0:
            raise ConfigError("omega", list(omega), f"needs one value per dim, like gamma ({d})")
        if any(w <= 0 for w in self.omega):
            raise ConfigError("omega", list(omega), "frequencies must be > 0")
        check_number("n_random", n_random, kind=int, low=0)
        if n_random == 0:
            if x0 is None or v0 is None:
                raise ConfigError("x0", x0, "give x0 and v0 (B×d lists) or n_random > 0", fix="dataset.n_random=30")
            self.x0 = [[float(a) for a in row] for row in x0]
            self.v0 = [[float(a) for a in row] for row in v0]
            if len(self.x0) != len(self.v0) or any(len(r) != d for r in self.x0 + self.v0):
                raise ConfigError("x0", x0, f"x0 and v0 must both be B×{d} lists")
        self.n_random, self.init_range = n_random, init_range
        self._set_dims(d)

    def curves(self, times, g):
        if self.n_random:
            z = (2 * torch.rand(2, self.n_random, self.position_dim, generator=g, dtype=torch.float64) - 1)
            x0, v0 = z * self.init_range
        else:
            x0 = torch.tensor(self.x0, dtype=torch.float64)
            v0 = torch.tensor(self.v0, dtype=torch.float64)
        gam = torch.tensor(self.gamma, dtype=torch.float64)
        om = torch.tensor(self.omega, dtype=torch.float64)
        a, b = x0, (v0 + gam * x0) / om  # x = e^{−γt}(a cos ωt + b sin ωt)
        t = times[:, None, None]
        decay, c, s = torch.exp(-gam * t), torch.cos(om * t), torch.sin(om * t)
        x = decay * (a * c + b * s)
        v = decay * ((om * b - gam * a) * c - (om * a + gam * b) * s)
        return x, v


class Exponential(TrajectoryDataset):
    """x(t) = x0·e^{rate·t} (the SONODE paper's interpolation task: rate 1/6, a gap to fill)."""

    def __init__(self, rate: float = 1 / 6, x0: float = 1.0, **windows) -> None:
        super().__init__(**windows)
        check_number("rate", rate)
        self.rate, self.x0 = float(rate), float(x0)
        self._set_dims(1)

    def curves(self, times, g):
        x = self.x0 * torch.exp(self.rate * times)[:, None, None]
        return x, self.rate * x


class ForcedVanDerPol(TrajectoryDataset):
    """ẍ = μ(1 − x²)ẋ − x + A cos(ωt), integrated once with dopri5 at rtol = atol = 1e-10 in
    float64. The forcing cos(ωt) reaches models as a sampled input (``forcing_points`` samples
    over the grid, linearly interpolated: error ≤ (ωΔt)²/8)."""

    def __init__(self, mu: float = 8.53, amplitude: float = 1.4, omega: float = math.pi / 5, x0: float = 0.1,
                 v0: float = 0.0, forcing_points: int = 20001, **windows) -> None:
        super().__init__(**windows)
        for key, value in (("mu", mu), ("amplitude", amplitude), ("omega", omega), ("x0", x0), ("v0", v0)):
            check_number(key, value)
        check_number("forcing_points", forcing_points, kind=int, low=2)
        self.mu, self.amplitude, self.omega = float(mu), float(amplitude), float(omega)
        self.x0, self.v0, self.forcing_points = float(x0), float(v0), forcing_points
        self.has_forcing, self.forcing_dim = True, 1
        self._set_dims(1)

    def _span(self) -> tuple[float, float]:
        windows = (self.train_windows + self.test_windows + (self.val_windows or [])
                   + [w for ws in self.extra_windows.values() for w in ws])
        starts, ends = [w[0] for w in windows], [w[1] for w in windows]
        return min(starts), max(ends)

    def curves(self, times, g):
        from torchdiffeq import odeint

        mu, amp, om = self.mu, self.amplitude, self.omega

        def f(t, z):
            x, v = z[..., 0], z[..., 1]
            return torch.stack([v, mu * (1 - x**2) * v - x + amp * torch.cos(om * t)], dim=-1)

        z0 = torch.tensor([self.x0, self.v0], dtype=torch.float64)
        z = odeint(f, z0, times, rtol=1e-10, atol=1e-10, method="dopri5", options={"max_num_steps": 10**7})
        return z[:, None, :1], z[:, None, 1:]

    def forcing(self) -> Forcing:
        t0, t1 = self._span()
        ts = torch.linspace(t0, t1, self.forcing_points, dtype=torch.float64)
        return Forcing(ts.float(), (self.amplitude * torch.cos(self.omega * ts)).float(), outside="clamp")


class SystemIdentificationCSV(TrajectoryDataset):
    """A measured input/output record (one trajectory, time = sample index): the ``input_column``
    is the forcing u(t) (linearly interpolated between samples, ``forcing_outside`` beyond them),
    the ``output_column`` the observed position. Train on samples 0…n_train−1, test on
    n_train…n_test−1 predicting from the same x0. Validation: the training samples (a measured
    record has one trajectory and no second noise draw). Both columns have the mean of the *training*
    rows removed and are multiplied by ``scale``. ``rmse_window``: running RMSE window.

    **Arguments:** ``path`` (under ``paths.data_dir``), ``input_column``, ``output_column``,
    ``n_train``, ``n_test``, ``scale``, ``forcing_outside`` (zero | clamp), ``rmse_window``.
    """

    has_velocity = False

    def __init__(self, path: str, input_column: str, output_column: str, n_train: int = 1000,
                 n_test: int = 5000, scale: float = 1.0, forcing_outside: str = "zero",
                 rmse_window: int | None = 300, seed: int = 0) -> None:
        check_number("n_train", n_train, kind=int, low=2)
        check_number("n_test", n_test, kind=int, low=n_train)
        super().__init__(train_windows=[[0, n_train - 1, n_train]],
                         test_windows=[[n_train, n_test - 1, n_test - n_train]] if n_test > n_train else (),
                         rmse_window=rmse_window, seed=seed)
        check_number("scale", scale, low=0, low_open=True)
        check_choice("forcing_outside", forcing_outside, ["zero", "clamp"])
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError("path", str(path), "no such data file",
                              fix="set paths.data_dir (or NODE_LAB_DATA) to the folder holding it")
        self.input_column, self.output_column = input_column, output_column
        self.n_train, self.n_test, self.scale, self.forcing_outside = n_train, n_test, scale, forcing_outside
        self.has_forcing, self.forcing_dim = True, 1
        self._set_dims(1)
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    def describe(self) -> str:
        return f"{type(self).__name__}({self.path.name})"

    def _columns(self) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None:
            bad = lambda why: ConfigError("path", str(self.path), why,  # noqa: E731
                                          fix="check the file under paths.data_dir (NODE_LAB_DATA)")
            try:
                with self.path.open() as f:
                    header = [h.strip().strip('"') for h in f.readline().strip().split(",")]
                for col in (self.input_column, self.output_column):
                    if col not in header:
                        raise bad(f"has no column {col!r} (columns: {', '.join(h for h in header if h)})")
                cols = [header.index(self.input_column), header.index(self.output_column)]
                with warnings.catch_warnings():  # an empty body is reported below, not as a numpy warning
                    warnings.simplefilter("ignore")
                    table = np.genfromtxt(self.path, delimiter=",", skip_header=1, usecols=cols,
                                          max_rows=self.n_test, dtype=np.float64)
            except (OSError, ValueError, UnicodeDecodeError) as err:
                raise bad(f"unreadable as CSV ({str(err).splitlines()[0]})") from None
            table = table.reshape(-1, 2)  # (rows, [input, output]); 0 rows for a header-only file
            if table.shape[0] < self.n_test or not np.isfinite(table).all():
                raise bad(f"needs {self.n_test} complete numeric rows, found {int(np.isfinite(table).all(1).sum())}")
            table = (table - table[: self.n_train].mean(0)) * self.scale
            self._cache = (table[:, 0], table[:, 1])
        return self._cache

    def curves(self, times, g):
        _, y = self._columns()
        y = torch.from_numpy(y)[times.long()]
        velocity = torch.full_like(y, float("nan"))  # not observed
        return y[:, None, None], velocity[:, None, None]

    def load(self) -> Data:
        data = super().load()
        for split in (data.train, data.val, data.test):
            split.v0, split.velocity = None, None
        return data

    def forcing(self) -> Forcing:
        u, _ = self._columns()
        return Forcing(torch.arange(self.n_test, dtype=torch.float32), torch.from_numpy(u).float(),
                       outside=self.forcing_outside)


class GeneralisedParity(Dataset):
    """x ~ U[−1, 1]^dim ↦ scale·x (scale −1: the SONODE paper's generalised parity, a map that
    reverses orientation in odd dims, where a first-order NODE cannot represent it). ``n_val``
    validation points come from their own random stream."""

    task = Task.regression

    def __init__(self, dim: int = 1, n_train: int = 50, n_test: int = 10, scale: float = -1.0, n_val: int = 10,
                 seed: int = 0) -> None:
        super().__init__(seed)
        check_number("dim", dim, kind=int, low=1)
        check_number("n_train", n_train, kind=int, low=1)
        check_number("n_val", n_val, kind=int, low=1)
        check_number("n_test", n_test, kind=int, low=1)
        check_number("scale", scale)
        self.data_dim = self.output_dim = dim
        self.n_train, self.n_val, self.n_test, self.scale = n_train, n_val, n_test, float(scale)

    def _split(self, n: int, g: torch.Generator) -> Split:
        x = 2 * torch.rand(n, self.data_dim, generator=g) - 1
        return Split(x=x, y=self.scale * x)

    def load(self) -> Data:
        g = self.generator()
        train, test = self._split(self.n_train, g), self._split(self.n_test, g)
        return Data(task=self.task, train=train, val=self._split(self.n_val, self.generator("val")), test=test,
                    loss="mse", output_dim=self.data_dim)
