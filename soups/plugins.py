"""User code named in a YAML file by dotted path: `package.module:function` or `package.module.function`.

A dimension file can name its rule scorer or its held-out metric this way, so a new scorer is a
function in the user's own module, with no change to soups. Importing runs that module's code:
name only modules you trust, as with any Python configuration.
"""

from __future__ import annotations

import importlib
from typing import Any


def is_dotted(name: str) -> bool:
    """Whether `name` looks like a dotted path (contains `:` or `.`) rather than a registered name."""
    return ":" in name or "." in name


def load_object(path: str, where: str) -> Any:
    """The object at `path` (`pkg.mod:attr` or `pkg.mod.attr`); `where` names the field for errors."""
    from soups.errors import ConfigError

    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ConfigError(f"{where}: {path!r} is not a dotted path; write package.module:function")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{where}: cannot import {module!r} ({e}); is it on PYTHONPATH?") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{where}: module {module!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{where}: {path!r} is not callable")
    return obj
