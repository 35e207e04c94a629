"""``rlkit watch``: placeholder."""


def watch() -> None:
    pass
