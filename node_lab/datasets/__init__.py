"""The `dataset/` group. The contract is in :mod:`node_lab.datasets.base`."""

from node_lab.datasets.base import Data, Dataset, Forcing, Split, Task
from node_lab.datasets.images import TorchvisionImages
from node_lab.datasets.mechanics import DoublePendulum, MechanicalSystem, Pendulum, Spring, TwoBody
from node_lab.datasets.synthetic import CompactParity, NestedSpheres, Sine, SineCurve

__all__ = ["CompactParity", "Data", "Dataset", "DoublePendulum", "Forcing", "MechanicalSystem", "NestedSpheres",
           "Pendulum", "Sine", "SineCurve", "Split", "Spring", "Task", "TorchvisionImages", "TwoBody"]
