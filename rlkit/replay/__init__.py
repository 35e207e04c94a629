"""Replay storage for rlkit's DQNs, on SB3's buffers: prioritized (sum-tree, n-step aware) and frame buffers."""
