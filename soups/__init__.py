"""soups: Personalized Soups (RLPHF, arXiv 2310.11564) as a toolkit.

Train one LoRA expert per preference dimension, then merge them per user by a weight
vector. The library works without the CLI: ``from soups import merge``.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "merge"]


def __getattr__(name: str):  # lazy: keep `import soups` and `soups --help` instant
    if name == "merge":
        from soups.merge.engine import merge

        return merge
    raise AttributeError(name)
