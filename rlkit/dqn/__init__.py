"""DQN beyond vanilla, as thin subclasses of Stable-Baselines3 and sb3-contrib.

- :mod:`rlkit.dqn.targets`: the TD targets and losses as small pure functions.
- :mod:`rlkit.dqn.buffers`: a sum-tree and the proportional prioritized replay buffer (n-step aware).
- :mod:`rlkit.dqn.policies`: dueling and NoisyNet Q-networks for MlpPolicy and CnnPolicy.
- :mod:`rlkit.dqn.diagnostics`: what the training loop logs under ``diag/`` and the divergence guard.
- :mod:`rlkit.dqn.algorithms`: ``RlkitDQN`` (DQN) and ``RlkitQRDQN`` (sb3-contrib QR-DQN) whose
  ``train()`` adds Double DQN, the loss choice, prioritized replay, diagnostics and the guard.

Everything here imports torch; import it lazily from CLI code.
"""
