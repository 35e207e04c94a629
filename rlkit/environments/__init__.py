"""Building gymnasium/SB3 environments from a preset (Atari included)."""
