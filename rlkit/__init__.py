"""rlkit: a typed, resumable DQN toolkit on Stable-Baselines3.

The Python API (``docs/python-api.md``): :func:`train`, :func:`resume`, :func:`evaluate`,
:func:`record`, :func:`load`, :func:`tune`, :func:`doctor`; errors are :class:`RlkitError` (one clear line).
"""

from rlkit.api import TuneSummary, doctor, evaluate, load, record, resume, train, tune
from rlkit.core.errors import RlkitError

__version__ = "0.1.0"
__all__ = [
    "RlkitError",
    "TuneSummary",
    "__version__",
    "doctor",
    "evaluate",
    "load",
    "record",
    "resume",
    "train",
    "tune",
]
