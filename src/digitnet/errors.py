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
    """Training diverged (the loss became NaN, infinite or exploded) before any good epoch."""
