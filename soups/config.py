"""Where things live: the soups home (cache), the project's experts/ and recipes folders."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def soups_home() -> Path:
    """Cache directory for prepared bases and built artifacts: `$SOUPS_HOME`, default ~/.cache/soups."""
    return Path(os.environ.get("SOUPS_HOME") or Path.home() / ".cache" / "soups").expanduser()


def experts_dir() -> Path:
    """Dimension definitions and shipped experts: `$SOUPS_EXPERTS_DIR`, default <project>/experts."""
    return Path(os.environ.get("SOUPS_EXPERTS_DIR") or PROJECT_ROOT / "experts").expanduser()


def recipes_dir() -> Path:
    """Shipped merge recipes: <project>/merge_recipes."""
    return PROJECT_ROOT / "merge_recipes"
