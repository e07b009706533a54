"""The `model/` group. The contract is in :mod:`node_lab.models.base`."""

from node_lab.models.base import ODEModel
from node_lab.models.fields import FeatureField, MLPField
from node_lab.models.node import FirstOrderODE
from node_lab.models.sonode import SecondOrderODE

__all__ = ["FeatureField", "FirstOrderODE", "MLPField", "ODEModel", "SecondOrderODE"]
