"""Study figures of the ANODE-family sweeps (loss and accuracy curves per row, predictions per p).

    python scripts/anode_family.py figures <sweep dir>      # study figures into <sweep dir>/figures

The results table (ours, mean ± std, beside the published numbers of
node_lab/published/anode_family.yaml) is `node-lab report <sweep dir>`.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import matplotlib
import torch
from omegaconf import OmegaConf

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load_runs(sweeps: list[Path]) -> list[dict]:
    runs = []
    for sweep in sweeps:
        for metrics_file in sorted(sweep.rglob("metrics.json")):
            run = metrics_file.parent
            config = OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "config.yaml"), resolve=True)
            with (run / "history.csv").open() as f:
                history = list(csv.DictReader(f))
            runs.append({"dir": run, "config": config, "metrics": json.loads(metrics_file.read_text()),
                         "history": history})
    return runs


def _rebuild(run: dict):
    from node_lab.build import build

    state = torch.load(run["dir"] / "checkpoint.pt", weights_only=False)
    cfg = OmegaConf.create(state["config"])
    cfg.logger = {"_target_": "node_lab.tracking.RunLogger"} if "logger" not in cfg else cfg.logger
    built = build(cfg)
    built.model.load_state_dict(state["model"])
    built.model.eval()
    return built, built.dataset.load()


def _p(run: dict) -> int:
    return run["config"]["augmentation"]["dim"]


def _loss_panel(ax, runs: list[dict], label, key: str = "loss", log: bool = True) -> None:
    for run in runs:
        its = [int(r["iteration"]) for r in run["history"]]
        ax.plot(its, [float(r[key]) for r in run["history"]], lw=1, label=label(run))
    ax.set_xlabel("iteration")
    ax.set_ylabel(key)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=7)


@torch.no_grad()
def figures(sweep: Path) -> list[Path]:
    out = sweep / "figures"
    out.mkdir(exist_ok=True)
    runs = load_runs([sweep])
    by_study: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_study[run["config"]["report"]["study"]].append(run)
    written = []
    for study, group in sorted(by_study.items()):
        name = study.replace("/", "_")
        if study.startswith("anode/sinusoid"):
            group = sorted(group, key=_p)
            fig, axes = plt.subplots(1, 2, figsize=(11, 4))
            for run in group:
                built, data = _rebuild(run)
                dense = torch.linspace(0, float(data.test.times[-1]), 300)
                path = built.model(data.test.x, dense)[:, 0]
                axes[0].plot(path[:, 0], path[:, 1], lw=1, label=f"p={_p(run)}")
            axes[0].scatter(data.test.y[:, 0, 0], data.test.y[:, 0, 1], s=6, c="k", label="data")
            axes[0].set_title(f"{study}: predictions")
            axes[0].legend(fontsize=7)
            _loss_panel(axes[1], group, lambda r: f"p={_p(r)}")
            axes[1].set_title("training loss (Adam, then L-BFGS)")
            written.append(_save(fig, out / f"{name}.png"))
        elif study == "anode/circles":
            seed0 = sorted([r for r in group if r["config"]["seed"] == min(g["config"]["seed"] for g in group)], key=_p)
            fig, axes = plt.subplots(1, len(seed0) + 1, figsize=(4 * (len(seed0) + 1), 4))
            for ax, run in zip(axes, seed0):
                built, data = _rebuild(run)
                g = torch.linspace(-3.2, 3.2, 120)
                gx, gy = torch.meshgrid(g, g, indexing="xy")
                values = built.model(torch.stack([gx.flatten(), gy.flatten()], 1), torch.tensor([0.0, 1.0]))[-1, :, 0]
                cs = ax.contourf(gx, gy, values.view(gx.shape), levels=20, cmap="RdBu")
                fig.colorbar(cs, ax=ax)
                acc = 100 * run["metrics"]["final"]["test_accuracy"]
                ax.set_title(f"p={_p(run)}: test acc {acc:.1f}%")
            _loss_panel(axes[-1], seed0, lambda r: f"p={_p(r)}")
            written.append(_save(fig, out / f"{name}.png"))
            biggest = seed0[-1]
            built, data = _rebuild(biggest)
            z = built.model.trajectory(data.test.x, torch.tensor([0.0, 1.0]))[-1]
            fig = plt.figure(figsize=(5, 5))
            ax = fig.add_subplot(projection="3d")
            dims = [2, 3, 4] if z.shape[1] >= 5 else [0, 1, min(2, z.shape[1] - 1)]
            ax.scatter(*(z[:, d] for d in dims), c=data.test.y[:, 0], cmap="RdBu", s=4)
            ax.set_title(f"final features, p={_p(biggest)}, dims {dims}")
            written.append(_save(fig, out / f"{name}_features.png"))
        elif study.startswith("anode/dupont_"):
            fig, axes = plt.subplots(1, 2, figsize=(11, 4))
            label = lambda r: f"{r['config']['report']['row']} s{r['config']['seed']}"  # noqa: E731
            _loss_panel(axes[0], group, label)
            _loss_panel(axes[1], [r for r in group if "ResNet" not in r["config"]["report"]["row"]], label,
                        key="nfe_forward", log=False)
            axes[0].set_title(f"{study}: training loss")
            axes[1].set_title("forward NFE per iteration")
            written.append(_save(fig, out / f"{name}.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["figures"])
    parser.add_argument("sweeps", nargs="+", type=Path)
    args = parser.parse_args()
    for sweep in args.sweeps:
        for path in figures(sweep):
            print(path)


if __name__ == "__main__":
    main()
