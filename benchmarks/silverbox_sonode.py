"""Silverbox SONODE: node-lab's preset iteration vs the paper's plain training loop, one process.

The reference is the SONODE paper's silverbox script, rewritten for today's torchdiffeq: the
same 7-parameter model (acceleration Linear(4→1) on [x, 0.01x³, v, V1(t)], initial velocity
Linear(1→1)), the forcing interpolated in Python from ``t`` at every evaluation, torchdiffeq
dopri5 at rtol = atol = 1e-3, backprop through the solver, Adam 0.01, full batch. node-lab runs
``experiment=sonode/silverbox_sonode`` through its own training loop (:func:`node_lab.loop.fit`).
Both start from the same weights and see the same data (node-lab's loader). Prints the mean
per-iteration time of each, the ratio, and both train MSEs every ``--report-every`` iterations.

    NODE_LAB_DATA=../shared/data python benchmarks/silverbox_sonode.py --iterations 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from hydra import compose, initialize_config_module
from torch import nn
from torchdiffeq import odeint

from node_lab.build import build
from node_lab.job import load_data
from node_lab.loop import LoopSettings, Progress, fit


class PaperODEFunc(nn.Module):
    """The paper's silverbox ODEfunc: state [x; v] stacked on dim 0, forcing looked up in Python."""

    def __init__(self, forcing: np.ndarray) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)
        self.u = forcing
        self.nfe = 0

    def forward(self, t, z):
        self.nfe += 1
        x, v = z[:1], z[1:]
        tt = float(t.detach().numpy())
        i = int(np.floor(tt))
        if 0 <= i < len(self.u) - 1:
            u = self.u[i] + (tt - i) * (self.u[i + 1] - self.u[i])
        elif i == len(self.u) - 1 and tt == i:
            u = self.u[i]
        else:
            u = 0.0
        features = torch.cat([x, 0.01 * x**3, v, torch.tensor([[u]], dtype=z.dtype)], dim=1)
        return torch.cat([v, self.fc(features)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--ref-iterations", type=int, default=None, help="default: --iterations")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report-every", type=int, default=50)
    parser.add_argument("overrides", nargs="*", help="extra node-lab overrides, e.g. solver.compile_chunk=9")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with initialize_config_module("node_lab.conf", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=sonode/silverbox_sonode", "logger=none", f"seed={args.seed}",
                                           "train.max_restarts=0", f"train.iterations={args.iterations}",
                                           f"train.eval_every={args.iterations}", *args.overrides])
    built = build(cfg)
    data = load_data(built)
    model = built.model
    init = {k: v.clone() for k, v in model.state_dict().items()}

    # --- node-lab -----------------------------------------------------------------------------
    print(f"node-lab: {model.describe()} | solver {built.solver.describe()} | seed {args.seed}", flush=True)
    progress = Progress()
    start = time.perf_counter()
    settings = LoopSettings(iterations=args.iterations, batch_size=None, eval_every=10**9, log_every=10**9)
    fit(model, data, built.optimizer(model.parameters()), built.steer, settings, t0=0.0, t1=1.0,
        generator=torch.Generator().manual_seed(0), logger=built.logger, progress=progress)
    wall = time.perf_counter() - start
    steps = [r["step_time"] for r in progress.history]
    for r in progress.history:
        if r["iteration"] % args.report_every == 0:
            print(f"node-lab  it {r['iteration']:5d}  train MSE {r['loss']:.5g}  {1e3 * r['step_time']:.1f} ms")
    first = steps[0] if steps else float("nan")
    steady = float(np.median(steps[1:])) if len(steps) > 1 else first
    print(f"node-lab: status {progress.status} {progress.reason} | first iteration {first:.2f} s (includes any "
          f"compile) | median {1e3 * steady:.1f} ms/it | mean incl. first {1e3 * wall / max(1, len(steps)):.1f} ms/it",
          flush=True)
    nl_final = progress.history[-1]["loss"] if progress.history else float("nan")

    # --- reference ----------------------------------------------------------------------------
    ref_iters = args.ref_iterations or args.iterations
    u = data.forcing.values[:, 0].double().numpy()[: len(data.train.times)]
    func = PaperODEFunc(u)
    g = nn.Linear(1, 1)
    w = init["dynamics.accel.net.0.weight"]  # node-lab features [x, v, 0.01x³, u]; the paper's [x, 0.01x³, v, u]
    with torch.no_grad():
        func.fc.weight.copy_(w[:, [0, 2, 1, 3]])
        func.fc.bias.copy_(init["dynamics.accel.net.0.bias"])
        g.weight.copy_(init["velocity.net.0.weight"])
        g.bias.copy_(init["velocity.net.0.bias"])
    opt = torch.optim.Adam([*func.parameters(), *g.parameters()], lr=0.01)
    y = data.train.y[:, 0, 0]
    x0 = data.train.x  # (1, 1)
    times = data.train.times
    ref_steps, ref_loss = [], float("nan")
    for it in range(1, ref_iters + 1):
        t = time.perf_counter()
        try:
            z = odeint(func, torch.cat([x0, g(x0)]), times, rtol=1e-3, atol=1e-3, method="dopri5")
        except AssertionError as err:
            print(f"reference diverged at iteration {it}: {err}")
            break
        loss = ((z[:, 0, 0] - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ref_steps.append(time.perf_counter() - t)
        ref_loss = loss.item()
        if it % args.report_every == 0:
            nl = progress.history[it - 1]["loss"] if it <= len(progress.history) else float("nan")
            print(f"reference it {it:5d}  train MSE {ref_loss:.5g} (node-lab {nl:.5g})  {1e3 * ref_steps[-1]:.0f} ms  "
                  f"NFE {func.nfe}", flush=True)
        func.nfe = 0
    ref = float(np.median(ref_steps))
    print(f"reference: {len(ref_steps)} iterations, median {1e3 * ref:.0f} ms/it, mean {1e3 * np.mean(ref_steps):.0f}")
    print(f"RATIO per iteration (reference / node-lab, medians): {ref / steady:.1f}x; "
          f"including node-lab's first iteration: {np.mean(ref_steps) / (wall / max(1, len(steps))):.1f}x")
    print(f"train MSE after {len(progress.history)} its: node-lab {nl_final:.5g} | reference after "
          f"{len(ref_steps)} its: {ref_loss:.5g}")


if __name__ == "__main__":
    main()
