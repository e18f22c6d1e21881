"""Errors that the command line reports as one line, without a traceback."""


class DigitnetError(Exception):
    """Base class: anything the user can fix (a bad file, a bad argument, no network)."""


class DataError(DigitnetError):
    """A data file is missing, corrupt, truncated or inconsistent."""


class DownloadError(DigitnetError):
    """A data set could not be downloaded (no network, bad checksum, truncated response)."""


class ModelFileError(DigitnetError):
    """A saved model file cannot be read or does not describe a digitnet model."""


class TrainingDivergedError(DigitnetError):
    """Training diverged (the loss became NaN, infinite or exploded) before any good epoch.

    ``reason`` is what happened; ``hint`` names the setting to change, in the words of the
    caller (the command line says ``--lr``)."""

    def __init__(self, reason: str, hint: str = "a lower learning rate") -> None:
        super().__init__(f"{reason} before any good epoch, so nothing was saved; try {hint}")
        self.reason = reason
