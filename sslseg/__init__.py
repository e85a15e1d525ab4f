"""sslseg: a reproducibility pipeline for semi-supervised medical image segmentation."""

__version__ = "0.1.0"


class SslsegError(Exception):
    """An error caused by bad input (config, files, data); the CLI prints it as one line."""


class TrainingInterrupted(SslsegError):
    """SIGTERM/SIGINT arrived (pre-emption, time limit): the resume state was saved; rerunning continues."""
