"""The default job's training iteration with dopri5 by torchdiffeq vs node-lab's own RK, eager and compiled.

Arms (same weights, same full batch, one torch thread, Adam at lr 0 so every iteration sees the
same weights and therefore the same steps: equal NFE is checked and printed):

- ``torchdiffeq``: ``solver=dopri5`` (today's default);
- ``node_lab``: ``solver=dopri5 solver.backend=node_lab``;
- ``compiled``: ``solver=dopri5_compiled``.

Each round runs every arm for ``--reps`` iterations, arms in rotating order; the per-iteration
time of each arm per round is the median of its reps. Prints min/median/max over rounds of each
arm's time and of the ratios to torchdiffeq, the loss of each arm (same to solver tolerance), the
compiled arm's first call (includes the compile) and the break-even iteration count.

    NODE_LAB_DATA=../shared/data python benchmarks/adaptive_solver.py --rounds 7 --reps 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra import compose, initialize_config_module

from node_lab.build import build
from node_lab.job import load_data
from node_lab.loop import _step, metric_name, training_split

ARMS = {"torchdiffeq": ["solver=dopri5"], "node_lab": ["solver=dopri5", "solver.backend=node_lab"],
        "compiled": ["solver=dopri5_compiled"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--arms", nargs="*", default=list(ARMS))
    parser.add_argument("overrides", nargs="*", help="extra overrides for every arm, e.g. solver.rtol=1e-5")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = {}
    init = None
    for arm in args.arms:
        with initialize_config_module("node_lab.conf", version_base="1.3"):
            cfg = compose("config", overrides=["logger=none", *ARMS[arm], *args.overrides])
        built = build(cfg)
        data = load_data(built)
        model = built.model
        if init is None:
            init = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(init)
        split, pair_times = training_split(data, built.loop.mode)
        batch = split.batch(torch.arange(len(split.x)))
        opt = torch.optim.Adam(model.parameters(), lr=0.0)

        def one(model=model, data=data, opt=opt, batch=batch, pair_times=pair_times, built=built):
            return _step(model, data, opt, batch, built.t0, built.t1, pair_times, built.loop, metric_name(data))

        start = time.perf_counter()
        row = one()
        first = time.perf_counter() - start
        runs[arm] = dict(step=one, first=first, row=row, times=[], describe=built.solver.describe())
        print(f"{arm:12s} {built.solver.describe():40s} first iteration {first:.2f} s  loss {row['loss']:.8g}  "
              f"NFE fwd/bwd {row['nfe_forward']}/{row['nfe_backward']}", flush=True)
    for r in range(args.rounds):
        order = args.arms[r % len(args.arms):] + args.arms[: r % len(args.arms)]
        for arm in order:
            ts = [runs[arm]["step"]()["step_time"] for _ in range(args.reps)]
            runs[arm]["times"].append(statistics.median(ts))
    base = runs.get("torchdiffeq")
    for arm, run in runs.items():
        ts = run["times"]
        line = f"{arm:12s} ms/it min {1e3 * min(ts):.2f} median {1e3 * statistics.median(ts):.2f} max {1e3 * max(ts):.2f}"
        if base is not None and arm != "torchdiffeq":
            ratios = [a / b for a, b in zip(ts, base["times"])]
            line += (f" | ratio to torchdiffeq (same round) min {min(ratios):.3f} median {statistics.median(ratios):.3f}"
                     f" max {max(ratios):.3f}")
            saved = statistics.median(base["times"]) - statistics.median(ts)
            if arm == "compiled" and saved > 0:
                extra = run["first"] - statistics.median(ts)
                line += f" | first call {run['first']:.1f} s: break-even after {extra / saved:.0f} iterations"
        print(line)


if __name__ == "__main__":
    main()
