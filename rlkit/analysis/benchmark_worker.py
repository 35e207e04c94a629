"""One seed of ``rlkit benchmark`` in a process of its own: ``python -m rlkit.analysis.benchmark_worker JOB``.

:func:`rlkit.analysis.benchmark.run_seeds` starts it through :class:`rlkit.core.processes.Children`
with ``JOB``, a JSON object: the keyword arguments of :func:`~rlkit.analysis.benchmark.seed_job`,
``cores`` (its share, or null) and ``result`` (a path). The seed trains (or resumes) and evaluates,
then writes its figures, or how it stopped (interrupted, or a one-line error), to ``result``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    from rlkit.core import atomic
    from rlkit.core.errors import Interrupted, RlkitError
    from rlkit.core.processes import follow_parent
    from rlkit.core.threads import use_cores

    parent = follow_parent()  # SIGTERM (a checkpoint, then out) when the benchmark's process ends, however it ends
    job: dict[str, Any] = json.loads(argv[0])
    use_cores(job.pop("cores"))
    result = Path(job.pop("result"))
    answer: dict[str, Any]
    try:
        from rlkit.analysis.benchmark import seed_job

        answer, code = {"figures": seed_job(**job)}, 0
    except Interrupted as exc:
        answer, code = {"interrupted": str(exc)}, exc.exit_code
    except RlkitError as exc:
        answer, code = {"error": str(exc)}, exc.exit_code
    if parent is None or os.getppid() == parent:  # nobody would read it after the benchmark's end
        atomic.write_json(result, answer)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
