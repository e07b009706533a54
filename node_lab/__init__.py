"""node-lab: an experiment runner for neural differential equations.

Python API: :func:`load_run` (a finished run: ``.model``, ``.config``, ``.data()``, ``.predict()``,
``.metrics``) and :func:`load_runs` (every run of a sweep); see :mod:`node_lab.runs`.
"""

__version__ = "0.1.0"


def load_run(path, ckpt=None, overrides=()):
    """The finished run in directory ``path``: see :func:`node_lab.runs.load_run`."""
    from node_lab.runs import load_run as _load_run  # imported lazily: `import node_lab` stays cheap

    return _load_run(path, ckpt, overrides)


def load_runs(root, ckpt=None):
    """Every finished run at or below ``root`` (a sweep): see :func:`node_lab.runs.load_runs`."""
    from node_lab.runs import load_runs as _load_runs

    return _load_runs(root, ckpt)
