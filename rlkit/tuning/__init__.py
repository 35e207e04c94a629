"""Optuna hyperparameter tuning: search spaces, the trial objective, studies, results.

- ``space``: ``tuning/*.yaml`` search spaces, named by preset keys, validated by a schema.
- ``objective``: one trial (sample, train K seeds, evaluate M times, prune, detect divergence).
- ``storage``: the embedded SQLite file or a shared database, with heartbeats.
- ``study``: checking a request, creating or continuing a study, running workers.
- ``display``: the live view; ``results``: show, plot and export.
"""
