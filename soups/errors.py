"""User-facing errors: the CLI prints the message on one line and exits with code 2.

Every message names the file, field or flag at fault, the bad value and the fix.
Unexpected exceptions are not SoupsError and keep their traceback.
"""


class SoupsError(Exception):
    """A user mistake (bad flag, file, field); message says what and how to fix it."""

    exit_code = 2


class ConfigError(SoupsError):
    """A bad recipe, dimension, training config or flag value."""


class WeightsError(SoupsError):
    """A bad weight vector (count, NaN/inf, all zero)."""


class AdapterError(SoupsError):
    """A missing, unsupported or malformed adapter (expert)."""


class BaseMismatchError(SoupsError):
    """Experts, soups or reward models built on a different base."""


class CheckpointError(SoupsError):
    """A missing or malformed model directory / safetensors file."""


class OutputExistsError(SoupsError):
    """`--out` exists and is not empty, and `--force` was not given."""


class DataError(SoupsError):
    """A malformed data file (prompts, pairs, answers, users); names file and line."""


class RewardError(SoupsError):
    """A reward that cannot be built or reached (unknown kind, unreachable judge...)."""


class ServerError(SoupsError):
    """A server that would not start or stopped (vLLM); the message names its log file."""

    exit_code = 1
