"""Seeds: the range every seed must lie in, and the one rule for seeds derived from a run's seed.

NumPy's legacy seeding (which SB3's ``set_random_seed`` uses) takes seeds in [0, 2**32 - 1];
gymnasium refuses negative ones. A seed given by a user is checked with :func:`check_seed`;
a seed rlkit derives from one (a resumed run's ``seed + steps``, the evaluation env's
``seed + EVAL_SEED_OFFSET (+ steps)``, a tuning trial's seeds) goes through :func:`derive_seed`,
which folds the sum back into the range (modulo 2**32), so a run trained with the largest seed
resumes and evaluates. Sums already in range are unchanged: existing runs reproduce exactly.
"""

from __future__ import annotations

from rlkit.core.errors import RlkitError

SEED_LIMIT = 2**32
"""Seeds lie in ``[0, SEED_LIMIT - 1]``."""

SEED_MAX = SEED_LIMIT - 1


def check_seed(seed: int, flag: str = "--seed") -> int:
    """``seed`` itself when it is a whole number in [0, 2**32 - 1]; anything else is a one-line error."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        shown = seed if isinstance(seed, int) and abs(seed) < 10**30 else f"{str(seed)[:24]}..."
        raise RlkitError(f"{flag} {shown}: a seed must be a whole number from 0 to {SEED_MAX} (2**32 - 1)")
    return seed


def choose_seed(seed: int | None) -> int:
    """The run's seed: ``seed`` checked, or, when ``None``, one drawn from the OS's entropy (then recorded
    in the run's config and command line). The one place a seed is drawn (``rlkit train`` and ``rlkit.train``)."""
    if seed is not None:
        return check_seed(seed)
    import random

    return random.SystemRandom().randrange(2**31)


def derive_seed(seed: int, *offsets: int) -> int:
    """``seed + sum(offsets)`` folded into [0, 2**32 - 1]: the one rule for every derived seed."""
    return (seed + sum(offsets)) % SEED_LIMIT


def stream_seed(seed: int, stream: str, *index: int) -> int:
    """The first env seed of a named seed stream of a run (``"confirm"``, ``"fresh"``), one per ``index``.

    Unlike the additive rule of :func:`derive_seed` (whose sums of offsets and steps may meet for two
    seeds of one benchmark), these come from a hash of the stream's name, the run's seed and the
    index: episodes drawn from one stream are, in practice, never those of another stream or of
    another run. The result leaves room below ``SEED_LIMIT`` for one seed per env (``+ i``).
    """
    import hashlib

    text = ":".join([stream, str(seed), *map(str, index)])
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return digest % (SEED_LIMIT - 2**16)
