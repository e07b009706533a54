"""Neural SDEs (``model=nsde``): dz = f_θ(t, z) dt + g_φ(t, z) dW, integrated by torchsde.

The drift f_θ is built by the same field factories as the ODE models (``model.field``: MLPField,
FeatureField with forcing for system-id data), the diffusion g_φ by another one
(``model.diffusion``), squashed to (0, ``diffusion_scale``) by a sigmoid so the noise stays bounded
(Li et al. 2020's latent-SDE diffusion). The solver is an SDE solver of the ``solver`` group
(``solver=sde_euler | sde_milstein | sde_srk | sde_reversible_heun``,
:mod:`node_lab.solvers.sde`).

**Loss.** The observations y are modelled as y(t) = z_data(t) + ε, ε ~ N(0, σ_obs²) (σ_obs learned,
``obs_std: learned``, or fixed). Each training step samples K = ``samples`` paths from the initial
state and scores the observations with the Gaussian whose mean and variance are the K paths'
sample mean and variance (+ σ_obs²), per time point and dim: the loss is that Gaussian NLL. Why this
and not the alternatives: (a) it is a proper scoring rule of the predictive distribution, so the
diffusion is pushed to the spread the data show, not to zero (an MSE of the paths would); (b) it is
the same NLL every run reports (:mod:`node_lab.metrics`), so training and evaluation agree; (c) the
Monte-Carlo mixture likelihood log mean_k N(y; z_k, σ²) is biased low for small K and its gradient
goes to the single nearest path, which is unstable with K ≈ 16; the sample CRPS would also work but
its gradient through the pairwise term is noisier at small K. The Gaussian assumption is a moment
match; CRPS and coverage are reported from the samples, without it. K = 16 by default: the relative
error of a K-sample variance is sqrt(2/(K − 1)) ≈ 0.37, enough for a loss (the gradient averages
over time points and iterations) at K·B paths per step; evaluation uses ``eval_samples`` = 64 paths
with a fixed Brownian seed, so validation scores of different iterations compare.

**Variants.** ``noise``: ``diagonal`` (one Brownian channel per state dim), ``scalar`` (one channel
for all dims), ``general`` (``brownian_dim`` channels, g a full n × m matrix; only euler and
reversible_heun take it). ``sde_type``: ``ito`` | ``stratonovich`` | null (the solver method's
own: Itô for euler, milstein, srk; Stratonovich for reversible_heun). ``order: 2`` is the
SONODE-style second-order SDE on [x, v]: dx = v dt, dv = a(t, x, v) dt + g(t, x, v) dW, noise on the
velocity only, initial velocity ``zero``, ``learned`` (an MLP of x0) or ``given`` (the dataset's v0).
Augmentation (``augmentation=zeros|input_layer|learned``, ``augmentation.dim``) appends extra state
dims (extra positions for ``order: 2``), which also receive noise. Not supported: an ``encoder``
(images; refused with one line), end-state tasks (the model is a distribution over trajectories;
refused), ``train.mode`` other than ``trajectory`` (refused).

Milstein and SRK assume, for diagonal noise, that g_i depends on z_i only (their strong order); an
MLP diffusion of the whole state breaks that assumption, which costs order, not consistency.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from node_lab.errors import ConfigError, check_choice, check_number
from node_lab.models.base import ODEModel
from node_lab.models.sonode import _InitialVelocity
from node_lab.solvers.sde import NATURAL_SDE_TYPE, NOISE_TYPES, SDE_TYPES, SDESolver

ORDERS = [1, 2]
SDE_INIT_VELOCITY = ["zero", "learned", "given"]
EVAL_ENTROPY = 20_201_217  # the Brownian seed of every evaluation (comparable across iterations)


class _SDEFunc(nn.Module):
    """torchsde's SDE contract: ``noise_type``, ``sde_type``, ``f(t, y)``, ``g(t, y)`` on (B, state)."""

    def __init__(self, drift: nn.Module, diffusion: nn.Module, noise_type: str, sde_type: str, order: int,
                 n: int, brownian_dim: int, scale: float) -> None:
        super().__init__()
        self.drift, self.diffusion = drift, diffusion
        self.noise_type, self.sde_type = noise_type, sde_type
        self.order, self.n, self.brownian_dim, self.scale = order, n, brownian_dim, scale

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.order == 1:
            return self.drift(t, y)
        return torch.cat([y[:, self.n:], self.drift(t, y)], dim=1)  # [v, a(t, x, v)]

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raw = self.scale * torch.sigmoid(self.diffusion(t, y))  # (B, n) or (B, n·m)
        b = y.shape[0]
        g = raw.view(b, self.n, self.brownian_dim) if self.noise_type == "general" else raw
        if self.noise_type == "scalar":
            g = g.unsqueeze(-1)  # (B, n, 1)
        if self.order == 2:  # no noise on the positions: dx = v dt
            g = torch.cat([torch.zeros_like(g), g], dim=1)
        return g

    def noise_dim(self) -> int:
        """Brownian channels: the state dims (diagonal), 1 (scalar) or ``brownian_dim`` (general)."""
        return {"diagonal": self.n * self.order, "scalar": 1, "general": self.brownian_dim}[self.noise_type]


class NeuralSDE(ODEModel):
    """A neural SDE of trajectories; see the module docstring.

    **Arguments:** ``field``: partial drift factory (in_dim = state, or [x, v] for order 2; out_dim =
    n); ``diffusion``: partial factory of the diffusion network (same in_dim; out_dim n, or n·m for
    general noise); ``diffusion_scale``: the diffusion's bound; ``noise``: diagonal | scalar | general;
    ``brownian_dim``: m of general noise; ``sde_type``: ito | stratonovich | null (the solver's);
    ``order``: 1 | 2; ``init_velocity``: zero | learned | given (order 2); ``velocity_net``: the
    learned initial velocity's MLP; ``samples``: K paths per training step; ``eval_samples``: paths
    of every evaluation; ``obs_std``: ``learned`` or a fixed observation-noise std > 0;
    ``init_obs_std``: its initial value when learned; the rest as in :class:`ODEModel`.
    """

    stochastic = True
    end_state_tasks = False

    def __init__(
        self,
        field: Callable[..., nn.Module],
        diffusion: Callable[..., nn.Module],
        diffusion_scale: float = 0.5,
        noise: str = "diagonal",
        brownian_dim: int = 1,
        sde_type: str | None = None,
        order: int = 1,
        init_velocity: str = "learned",
        velocity_net: dict | None = None,
        samples: int = 16,
        eval_samples: int = 64,
        obs_std: float | str = "learned",
        init_obs_std: float = 0.1,
        **common,
    ) -> None:
        super().__init__(**common)
        solver = self.solver
        if not isinstance(solver, SDESolver):
            raise ConfigError("solver", getattr(solver, "method", type(solver).__name__),
                              "is an ODE solver; model=nsde needs an SDE solver",
                              choices=["sde_euler", "sde_milstein", "sde_srk", "sde_reversible_heun"],
                              fix="solver=sde_euler", absolute=True)
        if not isinstance(self.encoder, nn.Identity):
            raise ConfigError("encoder", "set", "model=nsde takes vector trajectories without an encoder",
                              fix="model.encoder=null")
        check_choice("noise", noise, NOISE_TYPES)
        check_choice("order", order, ORDERS)
        check_choice("init_velocity", init_velocity, SDE_INIT_VELOCITY)
        if sde_type is not None:
            check_choice("sde_type", sde_type, SDE_TYPES)
        sde_type = sde_type or NATURAL_SDE_TYPE[solver.method]
        try:
            solver.check_sde(sde_type, noise)
        except ConfigError as err:
            raise ConfigError(err.key, err.value, err.problem, choices=err.choices, fix=err.fix,
                              absolute=True) from None
        check_number("diffusion_scale", diffusion_scale, low=0, low_open=True)
        check_number("brownian_dim", brownian_dim, kind=int, low=1)
        if noise != "general" and brownian_dim != 1:
            raise ConfigError("brownian_dim", brownian_dim, f"only general noise has several channels; "
                              f"{noise} noise sets them itself", choices=[1], fix="model.noise=general")
        check_number("samples", samples, kind=int, low=2)
        check_number("eval_samples", eval_samples, kind=int, low=2)
        if obs_std != "learned":
            check_number("obs_std", obs_std, low=0, low_open=True)
        check_number("init_obs_std", init_obs_std, low=0, low_open=True)
        self.order, self.samples, self.eval_samples = order, samples, eval_samples
        n = self.state_dim  # (augmented) first-order state, or positions for order 2
        self.n = n
        self.initial = self.augmenter()
        self.velocity = None
        if order == 2:
            net = {"hidden": [20, 20], "activation": "elu", "output_activation": None, **(velocity_net or {})}
            self.velocity = self.make("velocity_net", _InitialVelocity, mode=init_velocity, n=n, d=self.data_dim,
                                      net=net)
        elif init_velocity != "learned":
            raise ConfigError("init_velocity", init_velocity, "is a key of the second-order SDE",
                              fix="model.order=2 (or leave model.init_velocity at its default)")
        in_dim = 2 * n if order == 2 else n
        drift = self.make("field", field, in_dim=in_dim, out_dim=n)
        out = n * brownian_dim if noise == "general" else n
        diff = self.make("diffusion", diffusion, in_dim=in_dim, out_dim=out)
        self.dynamics = _SDEFunc(drift, diff, noise, sde_type, order, n, brownian_dim, float(diffusion_scale))
        self.learn_obs = obs_std == "learned"
        log_std = math.log(init_obs_std if self.learn_obs else float(obs_std))
        if self.learn_obs:
            self.log_obs_std = nn.Parameter(torch.tensor(log_std))
        else:
            self.register_buffer("log_obs_std", torch.tensor(log_std))
        self.build_head()

    # --- states and paths ------------------------------------------------------------------
    def initial_state(self, x: torch.Tensor, v0: torch.Tensor | None) -> torch.Tensor:
        position = self.initial(x)
        if self.order == 1:
            return position
        return torch.cat([position, self.velocity(position, v0)], dim=1)

    def _entropy(self) -> int:
        """Training draws a fresh Brownian seed from torch's (seeded, checkpointed) generator;
        evaluation always uses the same one."""
        return int(torch.randint(0, 2**31 - 1, (1,)).item()) if self.training else EVAL_ENTROPY

    def paths(self, x: torch.Tensor, times: torch.Tensor, v0: torch.Tensor | None, k: int,
              entropy: int | None = None) -> torch.Tensor:
        """k sampled state paths (k, T, B, state) from the initial states of x (B, d)."""
        z0 = self.initial_state(self.encoder(x), v0)  # (B, state)
        b = z0.shape[0]
        zs = self.solver.solve(self.dynamics, z0.repeat(k, 1), times, self.dynamics.noise_dim(),
                               self._entropy() if entropy is None else entropy)  # (T, k·B, state)
        return zs.unflatten(1, (k, b)).transpose(0, 1)

    def readout(self, zs: torch.Tensor) -> torch.Tensor:
        """(k, T, B, state) → (k, T, B, out) through the readout and head."""
        read = self.read(zs.flatten(1, 2))  # (k, T·B, read)
        out = self.head(read.flatten(0, 1)).unflatten(0, read.shape[:2])
        return out.unflatten(1, zs.shape[1:3])

    def sample(self, x: torch.Tensor, times: torch.Tensor, v0: torch.Tensor | None = None, k: int | None = None,
               entropy: int | None = None, observation_noise: bool = True) -> torch.Tensor:
        """k draws (k, T, B, out) of the predictive distribution of observations: path readouts
        plus N(0, σ_obs²) noise (drawn from ``entropy`` too); ``observation_noise=False``: paths only."""
        k = k or self.eval_samples
        entropy = self._entropy() if entropy is None else entropy
        out = self.readout(self.paths(x, times, v0, k, entropy))
        if observation_noise:
            g = torch.Generator(device=out.device).manual_seed(entropy + 1)
            out = out + self.obs_std() * torch.randn(out.shape, generator=g, dtype=out.dtype, device=out.device)
        return out

    def obs_std(self) -> torch.Tensor:
        return self.log_obs_std.exp()

    # --- the ODEModel interface: the predictive mean --------------------------------------
    def trajectory(self, x: torch.Tensor, times: torch.Tensor, v0: torch.Tensor | None = None) -> torch.Tensor:
        """The mean state path over ``eval_samples`` paths (T, B, state)."""
        return self.paths(x, times, v0, self.eval_samples).mean(0)

    def forward(self, x: torch.Tensor, times: torch.Tensor, v0: torch.Tensor | None = None) -> torch.Tensor:
        """The predictive mean (T, B, out) over ``eval_samples`` paths."""
        return self.readout(self.paths(x, times, v0, self.eval_samples)).mean(0)

    # --- what the loop asks a stochastic model ----------------------------------------------
    def training_loss(self, batch, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian NLL of the observed points under K = ``samples`` paths (+ σ_obs²), and the
        MSE of the paths' mean (detached)."""
        pred = self.readout(self.paths(batch.x, times, batch.v0, self.samples))  # (K, T, B, out)
        y = batch.y
        if batch.observed is not None:
            pred, y = pred[:, batch.observed], y[batch.observed]
        from node_lab.metrics import gaussian_nll

        mean = pred.mean(0)
        var = pred.var(0, unbiased=True) + self.obs_std() ** 2
        return gaussian_nll(mean, var, y), ((mean - y) ** 2).mean().detach()

    @torch.no_grad()
    def scores(self, split, times: torch.Tensor) -> dict:
        """NLL, CRPS, 90 % coverage and predictive-mean MSE of ``split``'s observed points under
        ``eval_samples`` draws of the predictive (paths + observation noise), fixed Brownian seed."""
        from node_lab.metrics import predictive_scores

        draws = self.sample(split.x, times, split.v0, self.eval_samples, EVAL_ENTROPY)
        y = split.y
        if split.observed is not None:
            draws, y = draws[:, split.observed], y[split.observed]
        return predictive_scores(draws, y)

    def velocity_estimate(self, zs: torch.Tensor) -> torch.Tensor | None:
        return zs[:, :, self.n : self.n + self.data_dim] if self.order == 2 else None

    def state_is_data(self) -> bool:
        return False  # a distribution of states: not fitted to derivatives

    def describe_networks(self) -> str:
        return f"NeuralSDE(field={type(self.dynamics.drift).__name__})"

    def describe(self) -> str:
        sde = self.dynamics
        return (f"NeuralSDE order={self.order} state={self.n * self.order} {sde.noise_type} {sde.sde_type} "
                f"K={self.samples} {self.augmentation.describe()} readout={self.read_mode}->{self.head_kind}")
