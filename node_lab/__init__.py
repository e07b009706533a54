"""node-lab: an experiment runner for neural differential equations."""

__version__ = "0.1.0"
