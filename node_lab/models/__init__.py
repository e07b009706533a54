"""The `model/` group. The contract is in :mod:`node_lab.models.base`."""

from node_lab.models.base import ODEModel
from node_lab.models.fields import ConvField, FeatureField, GroupNormConvField, MLPField
from node_lab.models.node import FirstOrderODE
from node_lab.models.physics import HamiltonianODE, HamiltonianResNet, LagrangianODE
from node_lab.models.resnet import DiscreteResNet
from node_lab.models.sonode import SecondOrderODE

__all__ = ["ConvField", "DiscreteResNet", "FeatureField", "FirstOrderODE", "GroupNormConvField", "HamiltonianODE",
           "HamiltonianResNet", "LagrangianODE", "MLPField", "ODEModel", "SecondOrderODE"]
