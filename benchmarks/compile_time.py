"""One-off cost of ``solver=dopri5_compiled``: the first solve + backward and the first solve without
autograd, against the eager node-lab step (same field, same NFE; outputs compared).

    python benchmarks/compile_time.py

The time depends on load and on inductor's on-disk cache (a compile earlier on this machine may
have warmed it).
"""

from __future__ import annotations

import time

import torch

from node_lab.models.fields import MLPField
from node_lab.solvers import Solver


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    field = MLPField(2, 2, hidden=[20, 20], activation="elu")  # the default job's field
    z0, times = torch.randn(300, 2), torch.tensor([0.0, 1.0])
    compiled = Solver(method="dopri5", backend="node_lab", compile=True)
    eager = Solver(method="dopri5", backend="node_lab")
    start = time.perf_counter()
    zs = compiled.solve(field, z0, times)
    zs[-1].sum().backward()
    print(f"first solve + backward (compiles forward and backward): {time.perf_counter() - start:.1f} s")
    with torch.no_grad():
        start = time.perf_counter()
        again = compiled.solve(field, z0, times)
        print(f"first solve without autograd (compiles once more): {time.perf_counter() - start:.1f} s")
        ref = eager.solve(field, z0, times)
    print(f"max |compiled - eager| = {(again - ref).abs().max().item():.2e}; NFE {compiled.nfe // 2} vs {eager.nfe}")


if __name__ == "__main__":
    main()
