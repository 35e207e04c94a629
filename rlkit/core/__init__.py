"""Lowest layer: errors, atomic writes, data paths, CPU threads. Imports nothing else of rlkit."""
