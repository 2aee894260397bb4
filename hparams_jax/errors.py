"""`ConfigError`: a setting or argument that is not allowed.

Raised by every check of user input (`TrainConfig`, the schedules and transforms, the models,
the data and the experiment grid); its message names the argument, the value and what is
allowed. It is a `ValueError`, so ``except ValueError`` keeps catching it; the command line
prints it as one line and exits with status 2, while any other exception keeps its traceback.
"""


class ConfigError(ValueError):
    """A setting or argument that is not allowed; the message says which, and what is."""
