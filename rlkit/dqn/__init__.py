"""DQN beyond vanilla, as thin subclasses of Stable-Baselines3 and sb3-contrib.

- :mod:`rlkit.dqn.loss`: the TD loss, defined once (``td_loss``: Double DQN, n-step, Huber/MSE, C51, QR-DQN).
- :mod:`rlkit.dqn.policies`: dueling, NoisyNet and C51 heads for SB3's Q-network and sb3-contrib's quantile network.
- :mod:`rlkit.dqn.engine`: a training phase (sample, target, loss, gradient, clip, step), from parts chosen once.
- :mod:`rlkit.dqn.mlp`: the written-out backward of an MLP Q-network (a fast part of the engine).
- :mod:`rlkit.dqn.diagnostics`: what the training loop logs under ``diag/`` and the divergence guard.
- :mod:`rlkit.dqn.algorithms`: ``RlkitDQN`` and ``RlkitQRDQN``, whose ``train()`` hands each phase to the engine.
- :mod:`rlkit.dqn.private`: every private torch or SB3 hook the fast parts use, each tested.

Everything here imports torch; import it lazily from CLI code.
"""
