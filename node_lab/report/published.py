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

import re
from pathlib import Path

import yaml

VALUE = re.compile(r"(?P<value>[-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*(?:±\s*(?P<pm>[0-9.eE+-]+))?\s*(?P<unit>%?)$")
PUBLISHED_DIR = Path(__file__).resolve().parent.parent / "published"


def load_published(directory: Path = PUBLISHED_DIR) -> list[dict]:
    """Rows of every file; ``value: "73.2 %"`` is read as value 73.2 with unit "%", and
    ``protocol`` stands in for ``notes``."""
    rows: list[dict] = []
    for file in sorted(Path(directory).glob("*.yaml")):
        content = yaml.safe_load(file.read_text()) or []
        if isinstance(content, dict):  # tolerate {rows: [...]} files
            content = content.get("rows", [])
        for row in content:
            if isinstance(row, dict) and {"study", "row", "metric", "value"} <= set(row):
                row = {**row, "file": file.name}
                if isinstance(row["value"], str):  # "73.2 %", "96.4 ± 0.5 %"
                    match = VALUE.match(row["value"].strip())
                    if match is None:
                        continue
                    row["value"], row["unit"] = float(match["value"]), row.get("unit") or match["unit"]
                    if match["pm"]:
                        row["notes"] = f"published ± {match['pm']}; " + str(row.get("notes") or row.get("protocol", ""))
                row.setdefault("notes", row.get("protocol", ""))
                rows.append(row)
    return rows


def metric_paths(metric: str) -> list[str]:
    """Where a published metric may live in metrics.json, most likely first: a dotted path as
    given; "final test accuracy" → final.test_accuracy; a bare name under final, physics or the top."""
    metric = metric.strip()
    if "." in metric:
        return [metric]
    words = metric.split()
    if len(words) > 1 and words[0] in ("final", "best"):
        return [f"{words[0]}.{'_'.join(words[1:])}"]
    name = "_".join(words)
    return [f"final.{name}", f"physics.{name}", name]


def scale(row: dict) -> float:
    """Factor that puts our number on the published one's scale."""
    return 100.0 if str(row.get("unit", "")).strip() == "%" else 1.0
