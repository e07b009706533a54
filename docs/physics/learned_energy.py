"""How well the energy a trained HNN or LNN conserves stands in for the true energy, on the held-out
orbits of finished physics runs (how the two-body LNN diagnosis of RESULTS.md, session 6, was made).

    python docs/physics/learned_energy.py RUN_DIR [RUN_DIR ...]

For each run: a least-squares fit E_learned ≈ a·E + b over every state of the true test orbits
(the residual, in units of the true energy, is how much E wanders at fixed E_learned); the spread
of E_learned along one true orbit against its spread across orbits; and, on the model's own
rollout, the drift of E_learned, the true energy drift, and (two-body only) the total momentum at
the end and the drift left once the centre-of-mass kinetic energy |P|²/(2M) is taken out.
"""

import sys
from pathlib import Path

import torch

from node_lab.report.rundirs import load_trained, read_job


def main(run_dirs: list[str]) -> None:
    for run in run_dirs:
        built = load_trained(read_job(Path(run)))
        model, ds = built.model, built.dataset
        if not hasattr(model, "learned_energy"):
            print(f"{run}: {type(model).__name__} has no learned energy (HNN, HINN and LNN have)")
            continue
        data = ds.load()
        dtype = next(model.parameters()).dtype
        y = data.test.y.to(dtype)
        learned, true = model.learned_energy(y), ds.energy(y)  # (T, B)
        design = torch.stack([true.flatten(), torch.ones_like(true.flatten())], 1)
        a, b = torch.linalg.lstsq(design, learned.flatten()[:, None]).solution.flatten().tolist()
        residual = (learned.flatten() - design @ torch.tensor([a, b], dtype=dtype)).abs().mean() / abs(a)
        print(f"{run}: E_learned ≈ {a:.3g}·E + {b:.3g}, residual {residual:.3g} "
              f"({residual / data.energy_scale:.1%} of |E|); spread along an orbit "
              f"{learned.std(0).mean():.3g} vs across orbits {learned[0].std():.3g}")
        with torch.no_grad():
            pred = model(data.test.x.to(dtype), data.test.times.to(dtype), None)
        own = model.learned_energy(pred)
        own_drift = ((own - own[0]).abs() / own[0].abs().mean()).mean()
        drift = ((ds.energy(pred) - true[0]).abs() / data.energy_scale).mean()
        line = f"  rollout: E_learned drift {own_drift:.3g} (relative), true energy drift {drift:.3g}"
        if type(ds).__name__ == "TwoBody":  # [r1, r2, p1 or v1, p2 or v2], unit masses
            n = pred.shape[-1] // 2
            momentum = pred[..., n:n + 2] + pred[..., n + 2:n + 4]
            internal = ds.energy(pred) - (momentum**2).sum(-1) / 4
            line += (f"; |P| at the end {momentum[-1].norm(dim=-1).mean():.3g}, drift without the "
                     f"centre-of-mass kinetic energy {((internal - true[0]).abs() / data.energy_scale).mean():.3g}")
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
