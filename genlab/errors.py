"""The errors genlab raises: each names what was wrong and leaves the network as it was.

Every one subclasses GenlabError, and also the built-in exception Python code would expect
there (ValueError for a bad value, TypeError for a wrong type, OSError for a failed write), so
`except ValueError` keeps working.
"""


class GenlabError(Exception):
    """Base class of every error genlab raises on purpose."""


class ArgumentError(GenlabError, ValueError):
    """An argument with a value out of its range (a negative learning rate, a batch size of 0...)."""


class ArgumentTypeError(GenlabError, TypeError):
    """An argument of the wrong type (a float where a count is needed, a string for a number...)."""


class GraphError(GenlabError, ValueError):
    """The network description is invalid: a cycle, an unknown group, a width mismatch..."""


class DataError(GenlabError, ValueError):
    """Training or evaluation data that genlab refuses before it touches the network."""


class BackendError(GenlabError, RuntimeError):
    """The requested engine cannot run here (missing driver, device, compiler or package)."""


class FileFormatError(GenlabError, ValueError):
    """A file that is not a genlab network or checkpoint, or is damaged; names the member at fault."""


class SaveError(GenlabError, OSError):
    """A file could not be written; the file that was there before is unchanged."""


class TrainingError(GenlabError, RuntimeError):
    """A training step or growth step would have made the loss or a parameter non-finite; it was
    not applied, so the network and the engine hold the parameters of the last good step."""


class PeerError(GenlabError, RuntimeError):
    """Another process of a run over several processes died or stopped answering (for longer than
    GENLAB_DIST_TIMEOUT seconds); this one stops too. Files saved before are intact."""


class StaleNetworkError(GenlabError, RuntimeError):
    """The network was changed in a way the trainer cannot follow (see Trainer)."""
