"""Two workers that start a trial at the same moment beyond the study's target: the higher number is surplus."""

from __future__ import annotations

import optuna

from rlkit.tuning.objective import is_surplus


def test_the_higher_of_two_simultaneous_trials_is_surplus() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize")
    for value in (1.0, 2.0, 3.0, 4.0, 5.0):  # five finished
        trial = study.ask()
        study.tell(trial, value)
    first, second = study.ask(), study.ask()  # two workers, each starting "the sixth"
    assert not is_surplus(first, 6)  # finished 5 + running lower 0
    assert is_surplus(second, 6)  # finished 5 + running lower 1 (the other worker's)
    assert not is_surplus(second, 7)
    study.tell(first, 6.0)
    assert is_surplus(second, 6)  # and still so once the first has finished
