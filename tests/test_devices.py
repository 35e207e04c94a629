"""Devices: ``cuda:N`` is validated, and parallel workers are spread over the visible GPUs (no GPU needed)."""

from __future__ import annotations

import pytest
import torch

from rlkit.core.errors import RlkitError
from rlkit.training.factory import resolve_device, worker_devices


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this machine has three GPUs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)


def test_cuda_n_is_checked_against_the_visible_gpus(gpus: None) -> None:
    assert resolve_device("cuda:2") == "cuda:2" and resolve_device("auto") == "cuda"
    with pytest.raises(RlkitError, match=r"has 3 visible GPU\(s\): cuda:0 to cuda:2"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "cuda:01", "CUDA", "cuda:-1"])
def test_malformed_devices_are_one_line(bad: str) -> None:
    with pytest.raises(RlkitError, match=r"valid: auto, cpu, cuda, cuda:N"):
        resolve_device(bad)


def test_no_gpu_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for choice in ("cuda", "cuda:0"):
        with pytest.raises(RlkitError, match="no CUDA GPU is available"):
            resolve_device(choice)
    assert worker_devices("auto", 3) == ["cpu", "cpu", "cpu"]


def test_workers_spread_over_gpus(gpus: None) -> None:
    assert worker_devices("auto", 4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert worker_devices("cuda", 2) == ["cuda:0", "cuda:1"]
    assert worker_devices("cuda:1", 3) == ["cuda:1"] * 3  # an explicit GPU is kept
    assert worker_devices("cpu", 2) == ["cpu", "cpu"]


def test_tune_and_benchmark_workers_get_their_gpu(gpus: None, tmp_path: object) -> None:
    """The device each tuning worker process is started with, and each benchmark seed's job."""
    from types import SimpleNamespace

    from rlkit.tuning.study import worker_command

    request = SimpleNamespace(
        env="cartpole", trials=4, sampler="tpe", pruner="median", seed=0, device="auto", heartbeat=60,
        timeout=None, config=None, overrides=[], steps=None, seeds_per_trial=None, evals_per_trial=None,
        runs_root=None, imports=[], track=None,
    )  # fmt: skip
    prepared = SimpleNamespace(request=request, study_name="s", url=SimpleNamespace(url="sqlite:///x.db"),
                               space=SimpleNamespace(source="classic"))  # fmt: skip
    devices = [cmd[cmd.index("--device") + 1] for cmd in (worker_command(prepared, i) for i in range(4))]  # type: ignore[arg-type]
    assert devices == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
