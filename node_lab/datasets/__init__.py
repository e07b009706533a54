"""The `dataset/` group. The contract is in :mod:`node_lab.datasets.base`."""

from node_lab.datasets.base import Data, Dataset, Forcing, Split, Task
from node_lab.datasets.images import TorchvisionImages
from node_lab.datasets.mechanics import DoublePendulum, MechanicalSystem, Pendulum, Spring, TwoBody
from node_lab.datasets.synthetic import CompactParity, NestedSpheres, Sine, SineCurve
from node_lab.datasets.trajectories import (
    DampedOscillators,
    Exponential,
    ForcedVanDerPol,
    GeneralisedParity,
    SystemIdentificationCSV,
    TrajectoryDataset,
)

__all__ = ["CompactParity", "DampedOscillators", "Data", "Dataset", "DoublePendulum", "Exponential",
           "ForcedVanDerPol", "Forcing", "GeneralisedParity", "MechanicalSystem", "NestedSpheres", "Pendulum", "Sine",
           "SineCurve", "Split", "Spring", "SystemIdentificationCSV", "Task", "TorchvisionImages", "TrajectoryDataset",
           "TwoBody"]
