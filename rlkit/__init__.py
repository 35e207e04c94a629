"""rlkit: a typed, resumable DQN toolkit on Stable-Baselines3."""

__version__ = "0.1.0"
