"""The errors genlab raises: each names what was wrong and leaves the network as it was."""


class GenlabError(Exception):
    """Base class of every error genlab raises on purpose."""


class GraphError(GenlabError, ValueError):
    """The network description is invalid: a cycle, an unknown group, a width mismatch..."""


class DataError(GenlabError, ValueError):
    """Training or evaluation data that genlab refuses before it touches the network."""


class BackendError(GenlabError, RuntimeError):
    """The requested engine cannot run here (missing driver, device, compiler or package)."""


class FileFormatError(GenlabError, ValueError):
    """A file that is not a genlab network, or is damaged."""


class TrainingError(GenlabError, RuntimeError):
    """A training step produced a non-finite loss; the step was not applied."""
