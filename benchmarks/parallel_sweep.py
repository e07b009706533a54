"""Local parallel sweeps: a 2-job sweep with hydra/launcher=parallel (joblib) against the same sweep
run sequentially by Hydra's basic launcher, on this machine.

    python benchmarks/parallel_sweep.py [--iterations 1500] [--repeats 2] [--solver rk4]

Prints the wall time of each launcher and the speed-up (sequential / parallel). Both sweeps run the
same two jobs (nested spheres, seed=0,1, W&B off, ``device.threads`` as given: 1 by default, so the
two arms differ only in the launcher; ``--threads 0`` leaves the sequential jobs torch's default
thread count, as a user who never sets it would run them). The ratio includes process and worker
start-up, as a user experiences it. The default solver is fixed-step RK4, so the two seeds cost
the same and the ratio measures the launcher: with ``--solver dopri5`` one seed took 113 s and the
other 55 s (adaptive steps), and no launcher can finish a sweep before its longest job.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NODE_LAB = str(Path(sys.executable).parent / "node-lab")


def sweep(launcher: list[str], iterations: int, threads: int, solver: str, out: Path) -> float:
    steps = ["solver.step_size=0.1"] if solver != "dopri5" else []
    cmd = [NODE_LAB, "train", "-m", *launcher, "seed=0,1", f"solver={solver}", *steps, f"train.iterations={iterations}",
           f"device.threads={threads or 'null'}",
           "logger=none", "train.figures=false", f"hydra.sweep.dir={out}"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "WANDB_SILENT": "true"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="device.threads of every job (0: torch's default)")
    parser.add_argument("--solver", default="rk4", help="rk4 (fixed steps, equal jobs) or dopri5 (adaptive)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        ratios = []
        for r in range(args.repeats):
            seq = sweep([], args.iterations, args.threads, args.solver, tmp / f"seq{r}")
            par = sweep(["hydra/launcher=parallel"], args.iterations, args.threads, args.solver, tmp / f"par{r}")
            ratios.append(seq / par)
            print(f"repeat {r}: sequential {seq:.1f} s | parallel {par:.1f} s | speed-up {seq / par:.2f}x", flush=True)
        ratios.sort()
        print(f"cores {os.cpu_count()} | solver {args.solver} | iterations/job {args.iterations} "
              f"| device.threads {args.threads or 'default'} "
              f"| median speed-up "
              f"{ratios[len(ratios) // 2]:.2f}x (min {ratios[0]:.2f}x, max {ratios[-1]:.2f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
