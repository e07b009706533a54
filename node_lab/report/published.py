"""Published numbers to stand beside ours: ``node_lab/published/*.yaml``.

Each file holds a list of rows::

    - study: anode/mnist_seed001      # matches report.study of our runs
      row: "ANODE p=10"               # matches report.row
      metric: test_accuracy           # a metrics.json key (``final.`` is implied) or a dotted path
      value: 77.0
      unit: "%"                       # optional: "%" compares our fraction × 100
      source: "seed 001, Table 1"
      notes: "single unseeded run; STEER active at test time"
"""

from __future__ import annotations

from pathlib import Path

import yaml

PUBLISHED_DIR = Path(__file__).resolve().parent.parent / "published"


def load_published(directory: Path = PUBLISHED_DIR) -> list[dict]:
    rows: list[dict] = []
    for file in sorted(Path(directory).glob("*.yaml")):
        content = yaml.safe_load(file.read_text()) or []
        if isinstance(content, dict):  # tolerate {rows: [...]} files
            content = content.get("rows", [])
        for row in content:
            if isinstance(row, dict) and {"study", "row", "metric", "value"} <= set(row):
                rows.append({**row, "file": file.name})
    return rows


def metric_path(metric: str) -> str:
    return metric if "." in metric else f"final.{metric}"


def scale(row: dict) -> float:
    """Factor that puts our number on the published one's scale."""
    return 100.0 if str(row.get("unit", "")).strip() == "%" else 1.0
