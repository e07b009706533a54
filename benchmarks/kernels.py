"""The activation and forcing kernels against what they replaced, and the default job both ways.

One torch thread; arms alternate inside every round (order rotated); each round's figure is the
median of ``--reps`` calls; printed: min/median/max over rounds of each arm and of the ratio
new/old within a round.

- ``elu``: ``F.elu`` (ATen, expm1) vs :func:`node_lab.models.fields.exp_elu` on a 300×20
  float32 tensor (what ``ELU`` runs when autograd is not recording); also both with a backward,
  ATen's vs a Python autograd.Function around exp_elu with ATen's ``elu_backward`` (the variant not
  shipped: it measured no faster);
- ``forcing``: the old per-evaluation interpolation (tests/test_kernels.py keeps it) vs
  :class:`node_lab.datasets.base.Forcing` on silverbox-sized knots (10⁴ samples, t inside);
- ``job``: the default job's evaluation of its test split (no autograd: where ELU switches) with
  ATen's ELU vs the exp-based one.

    NODE_LAB_DATA=../shared/data python benchmarks/kernels.py --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from node_lab.datasets.base import Forcing
from node_lab.models.fields import ELU, exp_elu

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_kernels import _old_forcing  # noqa: E402  (the replaced formula, kept once, in the test)


def rounds(arms: dict, n_rounds: int, reps: int) -> dict:
    names = list(arms)
    out = {n: [] for n in names}
    for r in range(n_rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            ts = []
            for _ in range(reps):
                start = time.perf_counter()
                arms[name]()
                ts.append(time.perf_counter() - start)
            out[name].append(statistics.median(ts))
    return out


def report(title: str, result: dict, old: str, new: str, unit: float = 1e6, label: str = "us") -> None:
    for name, ts in result.items():
        print(f"{title:10s} {name:12s} {label} min {unit * min(ts):.1f} median {unit * statistics.median(ts):.1f} "
              f"max {unit * max(ts):.1f}")
    ratios = [a / b for a, b in zip(result[new], result[old])]
    print(f"{title:10s} ratio {new}/{old}: min {min(ratios):.3f} median {statistics.median(ratios):.3f} "
          f"max {max(ratios):.3f}", flush=True)


class _FnELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = exp_elu(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.elu_backward(grad, 1.0, 1.0, 1.0, True, y)


def elu(args) -> None:
    x = torch.randn(300, 20, generator=torch.Generator().manual_seed(0))
    xg = x.clone().requires_grad_(True)

    def fb(fn):
        def run():
            fn(xg).sum().backward()
        return run

    report("elu fwd", rounds({"aten": lambda: F.elu(x), "exp": lambda: exp_elu(x)}, args.rounds, args.reps * 20),
           "aten", "exp")
    report("elu f+b", rounds({"aten": fb(F.elu), "exp_fn": fb(_FnELU.apply)}, args.rounds, args.reps * 10),
           "aten", "exp_fn")


def forcing(args) -> None:
    g = torch.Generator().manual_seed(0)
    times = torch.arange(10_000, dtype=torch.float32)
    values = torch.randn(10_000, 1, generator=g)
    f = Forcing(times, values, "zero")
    t = torch.tensor(1234.56)
    report("forcing", rounds({"old": lambda: _old_forcing(times, values, "zero", t), "new": lambda: f(t)},
                             args.rounds, args.reps * 50), "old", "new")


def job(args) -> None:
    from hydra import compose, initialize_config_module

    from node_lab.build import build
    from node_lab.job import load_data
    from node_lab.loop import evaluate

    with initialize_config_module("node_lab.conf", version_base="1.3"):
        cfg = compose("config", overrides=["logger=none", *args.overrides])
    built = build(cfg)
    data = load_data(built)
    model = built.model
    ours = ELU.forward

    def arm(aten: bool):
        def run():
            ELU.forward = nn.ELU.forward if aten else ours
            try:
                arm.metrics.add(round(evaluate(model, data, data.test, built.t0, built.t1, None)["metric"], 6))
            finally:
                ELU.forward = ours
        return run

    arm.metrics = set()
    print(f"job: {model.describe()} | {built.solver.describe()} | evaluation of the test split", flush=True)
    report("job eval", rounds({"aten_elu": arm(True), "exp_elu": arm(False)}, args.rounds, args.reps), "aten_elu",
           "exp_elu", unit=1e3, label="ms")
    print(f"job: test metrics seen {sorted(arm.metrics)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--only", nargs="*", default=["elu", "forcing", "job"])
    parser.add_argument("overrides", nargs="*", help="overrides of the job arm, e.g. model=anode")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.only:
        globals()[name](args)


if __name__ == "__main__":
    main()
