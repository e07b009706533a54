"""Fixed-step Runge–Kutta methods that step *on the requested time grid*.

``grid_euler``, ``grid_midpoint`` and ``grid_rk4`` (the classic 4th-order tableau) split every
interval between consecutive output times into ``substeps`` equal steps, so each output time is a
step boundary. When the data come on a grid and a forcing input is piecewise linear with knots
on that grid (sampled signals), every step sees a smooth integrand and the method keeps its full
order — unlike a fixed ``step_size`` that straddles the knots, or an adaptive method that has to
discover each kink.

The loop is plain torch: per step, ``stages`` field calls plus a few fused ``torch.add(...,
alpha=...)`` updates, no host syncs. ``compile_chunk: K`` additionally runs K consecutive steps
as one ``torch.compile``-d function (one fused forward and one fused backward kernel per chunk
instead of dozens of tiny ops per step): the same arithmetic, much less per-op overhead, after a
one-off compile per (method, field structure, K, shape) and process. The last, shorter chunk (if any) runs eagerly.
"""

from __future__ import annotations

import torch
from torch import nn

# Butcher tableaus (c, a, b) of explicit methods.
TABLEAUS: dict[str, tuple[list[float], list[list[float]], list[float]]] = {
    "euler": ([0.0], [[]], [1.0]),
    "midpoint": ([0.0, 0.5], [[], [0.5]], [0.0, 1.0]),
    "rk4": ([0.0, 0.5, 0.5, 1.0], [[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]], [1 / 6, 1 / 3, 1 / 3, 1 / 6]),
}
ORDERS = {"euler": 1, "midpoint": 2, "rk4": 4}  # order of accuracy of each tableau (tests/test_solvers.py)
GRID_METHODS = [f"grid_{name}" for name in TABLEAUS]


def rk_step(func: nn.Module, tableau: tuple, t: torch.Tensor, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """One explicit RK step of size ``h`` from (t, z); zero tableau entries cost nothing."""
    c, a, b = tableau
    ks: list[torch.Tensor] = []
    for i, ci in enumerate(c):
        zi = z
        for aij, kj in zip(a[i], ks):
            if aij != 0.0:
                zi = torch.add(zi, kj, alpha=aij * h) if isinstance(h, float) else zi + (aij * h) * kj
        ks.append(func(t + ci * h, zi))
    out = z
    for bi, ki in zip(b, ks):
        if bi != 0.0:
            out = torch.add(out, ki, alpha=bi * h) if isinstance(h, float) else out + (bi * h) * ki
    return out


def _steps(times: torch.Tensor, substeps: int) -> tuple[list[torch.Tensor], list[float]]:
    """Step start times (0-d tensors) and sizes (Python floats: one fused op per update)."""
    grid = times.detach().double().cpu()
    starts, sizes = [], []
    for k in range(len(grid) - 1):
        h = float(grid[k + 1] - grid[k]) / substeps
        for s in range(substeps):
            starts.append(float(grid[k]) + s * h)
            sizes.append(h)
    start_t = torch.tensor(starts, dtype=times.dtype, device=times.device).unbind() if starts else []
    return list(start_t), sizes


def _chunk(func: nn.Module, z: torch.Tensor, t0: torch.Tensor, hs: torch.Tensor, tableau: tuple,
           substeps: int) -> torch.Tensor:
    """``len(hs)`` steps from (t0, z); the states at every ``substeps``-th step, stacked."""
    outs = []
    t = t0
    for j in range(hs.shape[0]):
        h = hs[j]
        z = rk_step(func, tableau, t, h, z)
        t = t + h
        if (j + 1) % substeps == 0:
            outs.append(z)
    return torch.stack(outs)


_COMPILED: dict[tuple, object] = {}


def _compiled_chunk(tableau: tuple, substeps: int):
    """One ``torch.compile``-d chunk per (tableau, substeps) and process. The field is an *argument*
    (its parameters become graph inputs), so a new model of the same structure — the next job of a
    sweep, a restart — reuses the compiled kernels instead of recompiling (and a sweep never hits
    dynamo's recompile limit)."""
    key = (repr(tableau), substeps)
    if key not in _COMPILED:
        def chunk(func, z, t0, hs):
            return _chunk(func, z, t0, hs, tableau, substeps)

        _COMPILED[key] = torch.compile(chunk, dynamic=False, fullgraph=True)
    return _COMPILED[key]


class GridIntegrator:
    """Integrates ``func`` on ``times`` with ``method`` (a key of :data:`TABLEAUS`)."""

    def __init__(self, method: str, substeps: int = 1, compile_chunk: int | None = None) -> None:
        self.tableau = TABLEAUS[method]
        self.stages = len(self.tableau[0])
        self.substeps = substeps
        self.compile_chunk = compile_chunk

    def solve(self, func: nn.Module, z0: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, int]:
        """States at ``times`` (T, B, …) and the number of field evaluations."""
        starts, sizes = _steps(times, self.substeps)
        n = len(sizes)
        per = (self.compile_chunk or 0) * self.substeps  # steps per compiled chunk (K output intervals)
        pieces, z, j = [z0[None]], z0, 0
        if per:  # training and evaluation (no grad: dynamo compiles that mode once more per process)
            fn = _compiled_chunk(self.tableau, self.substeps)
            hs = torch.tensor(sizes, dtype=times.dtype, device=times.device)
            while j + per <= n:
                block = fn(func, z, starts[j], hs[j : j + per])  # (K, B, …)
                pieces.append(block)
                z, j = block[-1], j + per
        tail = []
        for i in range(j, n):
            z = rk_step(func, self.tableau, starts[i], sizes[i], z)
            if (i + 1) % self.substeps == 0:
                tail.append(z)
        if tail:
            pieces.append(torch.stack(tail))
        return torch.cat(pieces), self.stages * n
