"""The one exception type the CLI turns into a single clear line and a non-zero exit."""


class RlkitError(Exception):
    """A user-facing error: its message is printed as one line, without a traceback."""

    exit_code: int = 2


class Interrupted(RlkitError):
    """Training stopped by Ctrl-C or SIGTERM after a checkpoint was written."""

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum  # 130 for SIGINT, 143 for SIGTERM, as shells report them
