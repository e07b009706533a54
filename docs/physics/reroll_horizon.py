"""Roll the trained model of finished physics runs out to another horizon on the same held-out
initial conditions, and print the energy drift over [0, t] for a few t (how the two-body [0, 50]
and [0, 100] columns of RESULTS.md were computed from the seed-0 checkpoints).

    python docs/physics/reroll_horizon.py T_END DT RUN_DIR [RUN_DIR ...]

It regenerates the test split with test_t_end = T_END, test_dt = DT (the generator's draws for the
initial conditions do not depend on the horizon, and the training states are not regenerated,
which assumes dataset.noise = 0 as in the two-body presets).
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from node_lab.report.rundirs import load_trained, read_job


def main(t_end: float, dt: float, run_dirs: list[str]) -> None:
    for run in run_dirs:
        built = load_trained(read_job(Path(run)))
        ds, model = built.dataset, built.model
        g = ds.generator()
        ds.sample(ds.n_train, ds.ic, g)  # the training initial conditions, drawn first by generate()
        test = ds._split(ds.n_test, ds.test_ic, t_end, dt, g, 0.0)
        dtype = next(model.parameters()).dtype
        test = replace(test, **{k: v.to(dtype) for k, v in vars(test).items() if isinstance(v, torch.Tensor)})
        with torch.no_grad():
            pred = model(test.x, test.times, test.v0)
        e_true, e_pred = ds.energy(test.y), ds.energy(pred)
        rel = (e_pred - e_true[0]).abs() / ds.energy_scale(e_true[0])  # (T, B)
        stored = json.loads((Path(run) / "metrics.json").read_text())["physics"]["energy_drift"]
        print(f"{run}: energy_drift in metrics.json {stored:.4g}")
        for t in (5, 20, 25, 50, 100):
            k = int(round(t / dt))
            if k < len(test.times):
                print(f"  drift over [0, {t}]: {rel[: k + 1].mean():.4g}   at t = {t}: {rel[k].mean():.4g}")


if __name__ == "__main__":
    main(float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:])
