"""The `dataset/` group. The contract is in :mod:`node_lab.datasets.base`."""

from node_lab.datasets.base import Data, Dataset, Forcing, Split, Task
from node_lab.datasets.synthetic import CompactParity, NestedSpheres, Sine
from node_lab.datasets.trajectories import (
    DampedOscillators,
    Exponential,
    ForcedVanDerPol,
    GeneralisedParity,
    SystemIdentificationCSV,
    TrajectoryDataset,
)

__all__ = ["CompactParity", "DampedOscillators", "Data", "Dataset", "Exponential", "ForcedVanDerPol", "Forcing",
           "GeneralisedParity", "NestedSpheres", "Sine", "Split", "SystemIdentificationCSV", "Task",
           "TrajectoryDataset"]
