"""Training envs in their own processes (``vec_env: subproc``): the one owner of those processes.

:class:`SubprocEnvs` is SB3's ``SubprocVecEnv`` (same commands, same results) with its
processes owned here, from start to end:

- **Started safely**: ``forkserver`` (a fork of a small single-threaded server, never of this
  process with its torch and TensorBoard threads), with SIGINT, SIGTERM and SIGHUP held back
  while they start.
- **The parent decides**: workers ignore SIGINT, SIGTERM and SIGHUP, so the Ctrl-C a terminal
  sends its whole process group stops training cleanly (a checkpoint, the resume command)
  instead of killing the envs under it. A worker dies with its parent (``kill -9`` included).
- **Bounded**: every answer is awaited at most ``RLKIT_ENV_TIMEOUT`` seconds (default 60; the
  first, which makes the env, five times that); :meth:`SubprocEnvs.close` waits a few seconds,
  then kills. Workers still running when Python exits are closed the same way.
- **One line**: an env that raises in a worker, a worker that dies and one that stops answering
  are each one :class:`EnvProcessError` naming the env, the worker, the call and its step; every
  worker is stopped at once, and the run that used them stays resumable from its last checkpoint.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import multiprocessing.util  # registers multiprocessing's own exit handler first: ours runs before it
import os
import signal
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import SubprocVecEnv
from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper, VecEnv

from rlkit.core.errors import RlkitError
from rlkit.core.processes import (
    STOP_SIGNALS,
    describe_exit,
    die_with_parent,
    ignore_stop_signals,
    stop_signals_blocked,
)

START_METHOD = "forkserver"
TIMEOUT_VAR = "RLKIT_ENV_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
START_FACTOR = 5.0
"""The first answer of a worker (it makes its env first) may take this many times the timeout."""
CLOSE_GRACE_S = 3.0
"""How long :meth:`SubprocEnvs.close` lets workers end on their own before it kills them."""

_CALLS = {"get_spaces": "making the env", "step": "step()", "reset": "reset()"}


class EnvProcessError(RlkitError):
    """A subprocess env raised, died or stopped answering; its workers are stopped."""


@dataclass(frozen=True)
class _Failure:
    """What a worker sends instead of an answer when its env raised."""

    detail: str


def env_timeout() -> float:
    """``RLKIT_ENV_TIMEOUT`` (seconds a subprocess env may take to answer), else the default; bad values are one line."""
    raw = os.environ.get(TIMEOUT_VAR)
    if raw is None or not raw.strip():
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise RlkitError(f"{TIMEOUT_VAR}={raw!r}: give the seconds a subprocess env may take to answer, e.g. 60")
    return value


# ----------------------------------------------------------------------------------------
# The worker (runs in the child)
# ----------------------------------------------------------------------------------------


def _worker(remote: Connection, env_fn: CloudpickleWrapper, modules: tuple[str, ...], atari: bool) -> None:
    """Make one env and answer the parent's commands until it says close (or is gone)."""
    ignore_stop_signals()
    die_with_parent()  # its parent is the fork server, which ends when the training process does
    env: gym.Env[Any, Any] | None = None
    failure: _Failure | None = None
    try:
        env = _make(env_fn, modules, atari)
    except Exception as exc:
        failure = _Failure(_describe(exc))
    while True:
        try:
            cmd, data = remote.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        if cmd == "close":
            with contextlib.suppress(Exception):
                if env is not None:
                    env.close()
            break
        answer: Any = failure
        if failure is None:
            assert env is not None
            try:
                answer = _answer(env, cmd, data)
            except Exception as exc:  # the env's own code: reported, never a traceback here
                answer = _Failure(_describe(exc))
        try:
            remote.send(answer)
        except (OSError, EOFError):
            break
        except Exception as exc:  # an answer that cannot be pickled (an info dict holding a lambda)
            remote.send(_Failure(f"its answer cannot be sent to the parent ({_describe(exc)})"))
    remote.close()


def _make(env_fn: CloudpickleWrapper, modules: tuple[str, ...], atari: bool) -> gym.Env[Any, Any]:
    import warnings

    from rlkit.environments.imports import import_modules

    import_modules(modules, "env_imports, in a subprocess env")
    if atari:
        import ale_py

        gym.register_envs(ale_py)
    with warnings.catch_warnings():  # as make_env does in the parent: SB3 first tries render_mode='rgb_array'
        warnings.filterwarnings("ignore", message=".*initialised with render_mode='rgb_array'")
        return env_fn.var()


def _answer(env: gym.Env[Any, Any], cmd: str, data: Any) -> Any:
    """The answer to one command of SB3's ``SubprocVecEnv`` protocol."""
    from stable_baselines3.common.env_util import is_wrapped

    if cmd == "step":
        obs, reward, terminated, truncated, info = env.step(data)
        done = terminated or truncated
        info["TimeLimit.truncated"] = truncated and not terminated
        reset_info: dict[str, Any] = {}
        if done:  # the episode's last observation goes in info; the env starts the next one
            info["terminal_observation"] = obs
            obs, reset_info = env.reset()
        return obs, reward, done, info, reset_info
    if cmd == "reset":
        seed, options = data
        return env.reset(seed=seed, **({"options": options} if options else {}))
    if cmd == "get_spaces":
        return env.observation_space, env.action_space
    if cmd == "render":
        return env.render()
    if cmd == "env_method":
        name, args, kwargs = data
        return env.get_wrapper_attr(name)(*args, **kwargs)
    if cmd == "get_attr":
        return env.get_wrapper_attr(data)
    if cmd == "has_attr":
        try:
            env.get_wrapper_attr(data)
        except AttributeError:
            return False
        return True
    if cmd == "set_attr":
        setattr(env, data[0], data[1])
        return None
    if cmd == "is_wrapped":
        return is_wrapped(env, data)
    raise NotImplementedError(f"unknown command {cmd!r}")


def _describe(exc: BaseException) -> str:
    from rlkit.environments.imports import describe_exception

    return describe_exception(exc)


# ----------------------------------------------------------------------------------------
# The parent's side
# ----------------------------------------------------------------------------------------


class _Remote:
    """One worker's end of the pipe, as ``SubprocVecEnv`` uses it: every wait bounded, every failure one line."""

    def __init__(self, owner: SubprocEnvs, index: int, conn: Connection) -> None:
        self.owner, self.index, self.conn = owner, index, conn
        self.call = "get_spaces"
        self.steps = 0

    def send(self, message: tuple[str, Any]) -> None:
        self.call = message[0]
        self.steps += self.call == "step"
        try:
            self.conn.send(message)
        except (OSError, EOFError):
            raise self.owner.lost(self) from None

    def recv(self) -> Any:
        limit = self.owner.timeout_s * (START_FACTOR if self.call == "get_spaces" else 1.0)
        try:
            if not self.conn.poll(limit):
                raise self.owner.hung(self, limit)
            answer = self.conn.recv()
        except (OSError, EOFError):
            raise self.owner.lost(self) from None
        except BaseException:  # a second Ctrl-C mid-call: the envs are mid-protocol, of no further use
            self.owner.kill()
            raise
        if isinstance(answer, _Failure):
            raise self.owner.failed(self, answer)
        return answer

    def close(self) -> None:
        self.conn.close()


_LIVE: weakref.WeakSet[SubprocEnvs] = weakref.WeakSet()


class SubprocEnvs(SubprocVecEnv):
    """``SubprocVecEnv`` whose workers start safely, leave stopping to the parent and fail in one line.

    :param env_fns: one env factory per worker (what ``make_vec_env`` passes).
    :param env_id: the env's id, for messages.
    :param modules: modules each worker imports before making its env (the preset's ``env_imports``).
    :param atari: whether the workers register ale-py's envs first.
    :param timeout_s: seconds a worker may take to answer (default ``RLKIT_ENV_TIMEOUT``, else 60).
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env[Any, Any]]],
        *,
        env_id: str,
        modules: Sequence[str] = (),
        atari: bool = False,
        timeout_s: float | None = None,
    ) -> None:
        self.waiting = False
        self.closed = False
        self.env_id = env_id
        self.timeout_s = env_timeout() if timeout_s is None else timeout_s
        self.processes: list[Any] = []
        self.remotes = ()
        try:
            self._start(env_fns, tuple(modules), atari)
            for remote in self._pipes():  # every worker makes its env now: a failure is one line here
                remote.send(("get_spaces", None))
            spaces = [remote.recv() for remote in self._pipes()]
        except BaseException:  # a failure, or SIGTERM while starting: no worker is left behind
            self.kill()
            raise
        VecEnv.__init__(self, len(env_fns), *spaces[0])
        _LIVE.add(self)

    def _pipes(self) -> list[_Remote]:
        return list(self.remotes)

    def _start(self, env_fns: Sequence[Callable[[], gym.Env[Any, Any]]], modules: tuple[str, ...], atari: bool) -> None:
        context = multiprocessing.get_context(START_METHOD)
        context.set_forkserver_preload([__name__])  # the server imports gymnasium and SB3 once, not each worker
        remotes = []
        with stop_signals_blocked():
            _start_servers()
            for index, env_fn in enumerate(env_fns):
                parent_end, child_end = context.Pipe()
                remotes.append(_Remote(self, index, parent_end))
                process = context.Process(  # type: ignore[attr-defined]
                    target=_worker,
                    args=(child_end, CloudpickleWrapper(env_fn), modules, atari),
                    daemon=True,
                    name=f"rlkit-env-{index}",
                )
                self.remotes = tuple(remotes)
                process.start()
                self.processes.append(process)
                child_end.close()

    # --- failures: stop every worker, then one line ------------------------------------

    def _who(self, remote: _Remote) -> str:
        call = _CALLS.get(remote.call, f"{remote.call}()")
        at = f" at its step {remote.steps:,}" if remote.steps else ""
        return f"{self.env_id} (subprocess env {remote.index + 1} of {len(self.remotes)}), {call}{at}"

    def failed(self, remote: _Remote, failure: _Failure) -> EnvProcessError:
        self.kill()
        return EnvProcessError(f"{self._who(remote)}, raised {failure.detail}")

    def lost(self, remote: _Remote) -> EnvProcessError:
        process = self.processes[remote.index] if remote.index < len(self.processes) else None
        if process is not None:
            process.join(1.0)
        how = describe_exit(process.exitcode) if process is not None else "gone"
        if remote.call == "get_spaces":  # the others may be failing the same way: let them end on their own
            deadline = time.monotonic() + 2.0
            for other in self.processes:
                with contextlib.suppress(Exception):
                    other.join(max(0.0, deadline - time.monotonic()))
        self.kill()
        hint = ""
        if remote.call == "get_spaces" and process is not None and process.exitcode == 1:
            # It failed before it could report: most often a script without a main guard, re-run in the worker.
            hint = "; a Python script that trains with vec_env: subproc needs if __name__ == '__main__': (see above)"
        return EnvProcessError(f"{self._who(remote)}: its worker process died ({how}){hint}")

    def hung(self, remote: _Remote, limit: float) -> EnvProcessError:
        self.kill()
        return EnvProcessError(
            f"{self._who(remote)}: no answer within {limit:g} s, so its workers were stopped "
            f"(a slower env: set {TIMEOUT_VAR} to more seconds)"
        )

    # --- shutdown ------------------------------------------------------------------------

    def kill(self) -> None:
        """Stop every worker now (SIGKILL) and close the pipes; never raises."""
        self.closed = True
        _LIVE.discard(self)
        for process in self.processes:
            with contextlib.suppress(Exception):
                if process.is_alive():
                    process.kill()
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.join(2.0)
        for remote in self._pipes():
            with contextlib.suppress(Exception):
                remote.close()

    def close(self) -> None:
        """Ask every worker to close its env, wait up to :data:`CLOSE_GRACE_S`, then kill what is left."""
        if self.closed:
            return
        deadline = time.monotonic() + CLOSE_GRACE_S
        for remote in self._pipes():
            with contextlib.suppress(Exception):
                if self.waiting and remote.conn.poll(max(0.0, deadline - time.monotonic())):
                    remote.conn.recv()  # the answer of a step still in flight
                remote.conn.send(("close", None))
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.join(max(0.0, deadline - time.monotonic()))
        self.kill()


def _start_servers() -> None:
    """Multiprocessing's resource tracker and fork server, started with the stop signals held back.

    CPython's ``resource_tracker.ensure_running`` unblocks SIGINT and SIGTERM on its way out
    (whatever the mask was), so the mask is set again before the fork server starts: it and every
    worker forked from it then start with them held (a worker ignores them before letting them through).
    """
    from multiprocessing import forkserver, resource_tracker

    resource_tracker.ensure_running()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    forkserver.ensure_running()


@atexit.register
def _close_all() -> None:
    """At exit, before multiprocessing's own handler (which would wait on workers that ignore SIGTERM)."""
    for envs in list(_LIVE):
        envs.close()
