"""A benchmark's seeds as one queue in an Optuna storage, shared by any number of workers.

``rlkit benchmark PRESET --seeds N --storage URL``: the same command on any number of machines
(or shells) takes seeds from one queue. The queue is an Optuna study named after the
configuration and the seed count (:func:`study_name`) whose trials are the seeds: the first
worker enqueues seeds 0..N-1 (``study.enqueue_trial``); each worker asks for a trial
(``study.ask`` pops a waiting one, atomically), trains that seed, and reports its figures as the
trial's user attributes (``result``: the seed's ``SeedResult`` as a dict, with the worker and its
machine). A worker that dies stops sending heartbeats: after the grace period its trial fails
and is queued again with the same seed (Optuna's heartbeat and
:class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`, set up by
:func:`rlkit.tuning.storage.open_storage`); an interrupted seed is queued again at once. Whoever
takes it again resumes its run directory when the results folder is shared (``--out``), else
trains it anew. The class serves ``rlkit.analysis.benchmark.SeedSource``; rlkit's tuning and
analysis layers are peers, so it speaks in plain dicts.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rlkit.core.errors import RlkitError
from rlkit.tuning import storage as storages

if TYPE_CHECKING:
    import optuna

ATTR = "rlkit_benchmark"
"""Study user attribute: what the queue benchmarks (alias, env, digest, seeds, episodes)."""

LOOK_S = 1.0
"""How often an idle worker looks at the queue again."""

DEFAULT_WAIT_S = 24 * 3600.0
"""How long a worker with no seed left waits for the others' running seeds (``--wait``)."""


def study_name(alias: str, digest: str, seeds: int) -> str:
    """The queue's fixed name: ``benchmark-<alias>-<config digest>-<N>seeds`` (one per configuration and N)."""
    return f"benchmark-{alias}-{digest}-{seeds}seeds"


class SeedQueue:
    """This worker's view of the shared queue: take seeds, send heartbeats, report results."""

    def __init__(
        self,
        study: optuna.Study,
        seeds: int,
        *,
        url: storages.StorageUrl,
        wait_s: float = DEFAULT_WAIT_S,
        heartbeat_s: float = storages.HEARTBEAT_S,
        grace_s: float = storages.GRACE_S,
    ) -> None:
        self.study = study
        self.seeds = list(range(seeds))
        self.url = url
        self.wait_s = wait_s
        self.heartbeat_s = heartbeat_s
        self.grace_s = grace_s
        self.machine: dict[str, Any] = {}
        """This worker's machine (host, cores, yardstick): set by the benchmark before it takes seeds."""
        self.worker = storages.worker_name()
        self._held: dict[int, Any] = {}  # seed -> its optuna.Trial, taken by this worker
        self._empty = False
        self._next_look = 0.0
        self._next_beat = 0.0
        self._seen: list[Any] = []
        self._seen_at = -math.inf

    # -- taking seeds -------------------------------------------------------------------

    def take(self) -> int | None:
        """A waiting seed (``study.ask`` pops one atomically); a trial that is no queued seed is dropped."""
        import optuna

        while time.monotonic() >= self._next_look:
            _fail_stale(self.study)
            if not self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
                self._empty, self._next_look = True, time.monotonic() + LOOK_S
                return None
            with warnings.catch_warnings():  # "heartbeat is supposed to be used with optimize": beaten here
                warnings.simplefilter("ignore", UserWarning)
                trial = self.study.ask()
            seed = trial.user_attrs.get("seed")
            if not isinstance(seed, int) or self._taken_before(seed, trial.number):
                # Another worker popped the last waiting trial first (Optuna then samples a new one),
                # or two first workers both enqueued this seed: the earliest trial of a seed counts.
                trial.set_user_attr("surplus", True)
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            trial.suggest_int("seed", 0, len(self.seeds) - 1)  # the enqueued value: a retry keeps it
            trial.set_user_attr("worker", self.worker)
            self._held[seed] = trial
            self._empty = False
            self._beat(trial)
            return seed
        return None

    def _taken_before(self, seed: int, number: int) -> bool:
        """Whether an earlier trial of ``seed`` that did not fail exists (then this one is a duplicate)."""
        import optuna

        for other in self.study.get_trials(deepcopy=False):
            if (
                other.number < number
                and other.user_attrs.get("seed") == seed
                and other.state != optuna.trial.TrialState.FAIL
            ):
                return True
        return False

    def pending(self) -> bool:
        return not self._empty

    # -- heartbeats and results ---------------------------------------------------------

    def tick(self) -> None:
        """Heartbeats of the seeds this worker holds, every ``heartbeat_s``."""
        if time.monotonic() < self._next_beat:
            return
        for trial in self._held.values():
            self._beat(trial)
        self._next_beat = time.monotonic() + self.heartbeat_s

    def _beat(self, trial: Any) -> None:
        # Optuna's own heartbeat thread serves study.optimize only; an ask-and-tell trial is beaten here.
        self.study._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]

    def finished(self, seed: int, result: dict[str, Any]) -> None:
        trial = self._held.pop(seed)
        trial.set_user_attr("result", {**result, "trained_by": self.worker, "machine": self.machine})
        self.study.tell(trial, float(result["fresh_mean"]))

    def failed(self, seed: int, message: str) -> None:
        import optuna

        trial = self._held.pop(seed)
        trial.set_user_attr("error", message)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def put_back(self, seed: int) -> None:
        """Interrupted: the trial fails and the same seed is queued again (as a dead worker's would be)."""
        import optuna

        trial = self._held.pop(seed, None)
        if trial is None:
            return
        trial.set_user_attr("interrupted", True)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        frozen = self.study.get_trials(deepcopy=False)[trial.number]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)(self.study, frozen)

    # -- every worker's seeds -----------------------------------------------------------

    def _trials(self) -> list[Any]:
        """The study's trials, read at most once a second."""
        if time.monotonic() >= self._seen_at + LOOK_S:
            self._seen, self._seen_at = self.study.get_trials(deepcopy=False), time.monotonic()
        return self._seen

    def elsewhere(self) -> dict[int, dict[str, Any] | None]:
        held: dict[int, dict[str, Any] | None] = {}
        for seed, trial in self._latest(self._trials()).items():
            if seed in self._held:
                continue
            if trial.state.name == "COMPLETE":
                held[seed] = trial.user_attrs.get("result")
            elif trial.state.name == "RUNNING":
                held[seed] = None
        return held

    def results(self) -> dict[int, dict[str, Any]]:
        self._seen_at = -math.inf
        found = {}
        for seed, trial in self._latest(self._trials()).items():
            if trial.state.name == "COMPLETE" and isinstance(trial.user_attrs.get("result"), dict):
                found[seed] = trial.user_attrs["result"]
        return found

    @staticmethod
    def _latest(trials: list[Any]) -> dict[int, Any]:
        """Per seed, the trial that counts: the first complete one, else the newest that is no surplus."""
        chosen: dict[int, Any] = {}
        for trial in trials:
            seed = trial.user_attrs.get("seed")
            if not isinstance(seed, int) or trial.user_attrs.get("surplus"):
                continue
            if seed in chosen and chosen[seed].state.name == "COMPLETE":
                continue
            chosen[seed] = trial
        return chosen

    # -- waiting for the others ---------------------------------------------------------

    def settle(self, on_wait: Callable[[str], None] | None) -> bool:
        """Wait (at most ``wait_s``) until every seed is done; False at once when one is waiting to be taken.

        A seed that failed on its worker (an error, not a lost worker) ends the wait in one line.
        """
        from rlkit.core.errors import Interrupted
        from rlkit.training.callbacks import StopOnSignal

        deadline = time.monotonic() + self.wait_s
        said = ""
        with StopOnSignal() as stopper:
            while True:
                _fail_stale(self.study)
                self._seen_at = -math.inf
                latest = self._latest(self._trials())
                states = {seed: latest[seed].state.name if seed in latest else "MISSING" for seed in self.seeds}
                if all(state == "COMPLETE" for state in states.values()):
                    return True
                if any(state == "WAITING" for state in states.values()):
                    self._empty, self._next_look = False, 0.0
                    return False
                self._check_failed(latest, states)
                line = self._waiting_line(latest, states)
                if line != said and on_wait is not None:
                    on_wait(line)
                said = line
                if stopper.received is not None:
                    raise Interrupted(
                        "stopped waiting for the other workers' seeds; run the same command again for the summary",
                        stopper.received,
                    )
                if time.monotonic() >= deadline:
                    raise RlkitError(
                        f"gave up after {self.wait_s:g} s waiting for seeds on other workers ({line}); "
                        "run the same command again for the summary"
                    )
                time.sleep(LOOK_S)

    def _check_failed(self, latest: dict[int, Any], states: dict[int, str]) -> None:
        for seed, state in states.items():
            if state == "MISSING":
                raise RlkitError(f"the queue {self.study.study_name} in {self.url.shown} has no trial for seed {seed}")
            trial = latest[seed]
            if state == "FAIL" and "error" in trial.user_attrs:
                raise RlkitError(
                    f"seed {seed} failed on worker {trial.user_attrs.get('worker')}: {trial.user_attrs['error']}"
                )
            if state == "FAIL":  # a lost worker's trial retried too often, or an interrupted one not queued again
                raise RlkitError(
                    f"seed {seed}: its trial {trial.number} failed on worker {trial.user_attrs.get('worker')} "
                    f"and is not queued again; run the same command again to retry it"
                )

    def _waiting_line(self, latest: dict[int, Any], states: dict[int, str]) -> str:
        running = [seed for seed, state in states.items() if state == "RUNNING"]
        workers = sorted({str(latest[s].user_attrs.get("worker")) for s in running})
        done = sum(state == "COMPLETE" for state in states.values())
        return (
            f"{done} of {len(self.seeds)} seeds done; waiting for seed{'s' if len(running) != 1 else ''} "
            f"{', '.join(map(str, running))} on {', '.join(workers)} (a lost worker's seed is taken again "
            f"{self.grace_s:g} s after its last heartbeat)"
        )


def open_queue(
    url_text: str,
    *,
    alias: str,
    env_id: str,
    digest: str,
    seeds: int,
    episodes: int,
    wait_s: float = DEFAULT_WAIT_S,
    heartbeat_s: int = storages.HEARTBEAT_S,
) -> SeedQueue:
    """Open (or create, with seeds 0..N-1 enqueued once) the queue of this configuration and seed count.

    A bad URL or an unreachable server is one line (:func:`rlkit.tuning.storage.open_storage`), and so
    is a queue started with other ``--episodes``.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = storages.parse(url_text)
    grace_s = max(3 * heartbeat_s, 3)
    storage = _open(url, heartbeat_s, grace_s)
    name = study_name(alias, digest, seeds)
    record = {"alias": alias, "env_id": env_id, "digest": digest, "seeds": seeds, "episodes": episodes}
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    known = study.user_attrs.get(ATTR)
    if known is None:
        study.set_user_attr(ATTR, record)
        for seed in range(seeds):  # two first workers may both get here: the earliest trial of a seed counts
            study.enqueue_trial({"seed": seed}, user_attrs={"seed": seed}, skip_if_exists=True)
    elif known.get("episodes") != episodes:
        raise RlkitError(
            f"the queue {name} in {url.shown} evaluates --episodes {known.get('episodes')}, not {episodes}; "
            "use the same value to join it"
        )
    return SeedQueue(study, seeds, url=url, wait_s=wait_s, heartbeat_s=heartbeat_s, grace_s=grace_s)


def _open(url: storages.StorageUrl, heartbeat_s: int, grace_s: int) -> optuna.storages.RDBStorage:
    """:func:`rlkit.tuning.storage.open_storage`, tried again when first workers race to create the tables.

    (SQLite reports that race as ``table ... already exists``, which ``open_storage`` passes on.)
    """
    import random

    for attempt in range(4):
        try:
            return storages.open_storage(url, heartbeat_s=heartbeat_s, grace_s=grace_s)
        except RlkitError as exc:
            if "already exists" not in str(exc) or attempt == 3:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")  # pragma: no cover


def _fail_stale(study: optuna.Study) -> None:
    """Fail (and queue again) the trials of workers whose heartbeats stopped."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
