"""Merge methods, a registry: each turns the experts' LoRA factors at one module into soup factors.

A method returns `Factors(A, B, scale)` with the soup's delta `dW = scale * B @ A` (DESIGN.md,
"Merge math"). The engine adds dW to the base weight (full output) or writes A and B with
`lora_alpha / r = scale` (adapter output), so every method serves both formats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from soups.errors import ConfigError


@dataclass
class Part:
    """Expert i at one module: weight w_i, scale s_i, A_i (r_i x in), B_i (out x r_i); None if not targeted."""

    weight: float
    scale: float
    A: object | None
    B: object | None
    pad_rank: int  # the expert's block width in a stacked adapter (its largest rank)


@dataclass
class Factors:
    A: object  # R x in
    B: object  # out x R
    scale: float = 1.0
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    factors: Callable[..., Factors]
    check: Callable[..., None] = lambda adapters, rank: None
    adapter_rank: Callable[..., int] = lambda adapters, rank, module=None: 0  # module=None: the config's r
    needs_rank: bool = False


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"--method {name!r} is unknown; choose one of: {', '.join(METHODS)}") from None


def _stack(parts: Sequence[Part], pad: bool):
    """A = stack_rows(w_i s_i A_i), B = stack_cols(B_i); absent experts as zero blocks when `pad`."""
    import numpy as np

    ref = next(p for p in parts if p.A is not None)
    n_in, n_out = ref.A.shape[1], ref.B.shape[0]
    widths = [p.pad_rank if pad else (p.A.shape[0] if p.A is not None else 0) for p in parts]
    A = np.zeros((sum(widths), n_in), dtype=np.float32)
    B = np.zeros((n_out, sum(widths)), dtype=np.float32)
    at = 0
    for p, width in zip(parts, widths):
        if p.A is not None:
            r = p.A.shape[0]
            np.multiply(p.A, np.float32(p.weight * p.scale), out=A[at : at + r])
            B[:, at : at + r] = p.B
        at += width
    return A, B


def _exact(parts: Sequence[Part], rank: int | None, pad: bool = True) -> Factors:
    """exact soup: dW = sum_i w_i s_i B_i A_i, as one rank-(sum r_i) factor pair (DESIGN.md)."""
    A, B = _stack(parts, pad)
    return Factors(A, B, 1.0)


register(
    Method(
        "exact",
        "the true weighted sum of the experts' deltas, sum_i w_i s_i B_i A_i (adapter rank = sum of ranks)",
        _exact,
        adapter_rank=lambda adapters, rank, module=None: sum(a.max_rank for a in adapters),
    )
)


def _linear_check(adapters, rank) -> None:
    ref = adapters[0]
    for a in adapters[1:]:
        for what, x, y in (
            ("target modules", sorted(ref.modules), sorted(a.modules)),
            ("ranks", {m: v.rank for m, v in ref.modules.items()}, {m: v.rank for m, v in a.modules.items()}),
            (
                "scales (lora_alpha / r)",
                {m: v.scale for m, v in ref.modules.items()},
                {m: v.scale for m, v in a.modules.items()},
            ),
        ):
            if x != y:
                raise ConfigError(
                    f"--method linear averages each LoRA matrix, so experts need equal {what}; "
                    f"{ref.name} and {a.name} differ. Use --method exact (the true weighted sum)"
                )


def _linear(parts: Sequence[Part], rank: int | None) -> Factors:
    """The paper's averaging: A = sum w_i A_i, B = sum w_i B_i, scale s (cross terms w_i w_j B_i A_j remain)."""
    kept = [p for p in parts if p.A is not None]
    A = sum(p.weight * p.A for p in kept)
    B = sum(p.weight * p.B for p in kept)
    return Factors(A, B, kept[0].scale)


register(
    Method(
        "linear",
        "the Personalized Soups paper's averaging of each LoRA matrix (A and B separately); NOT the weighted "
        "sum of deltas (adds cross terms); needs equal ranks, alphas and targets",
        _linear,
        check=_linear_check,
        adapter_rank=lambda adapters, rank, module=None: (
            adapters[0].modules[module].rank if module else adapters[0].config.get("r", adapters[0].max_rank)
        ),
    )
)


def _svd(parts: Sequence[Part], rank: int | None) -> Factors:
    """exact delta truncated to rank k by SVD: B = U sqrt(S), A = sqrt(S) V^T; reports kept energy."""
    import numpy as np

    A, B = _stack(parts, pad=False)
    q1, r1 = np.linalg.qr(B.astype(np.float64))  # dW = B A = Q1 (R1 R2^T) Q2^T: SVD of the small core only
    q2, r2 = np.linalg.qr(A.astype(np.float64).T)
    u, s, vh = np.linalg.svd(r1 @ r2.T)
    k = min(rank, s.size)
    total = float((s**2).sum())
    energy = float((s[:k] ** 2).sum()) / total if total > 0 else 1.0
    root = np.sqrt(s[:k])
    B_k = np.zeros((B.shape[0], rank))
    A_k = np.zeros((rank, A.shape[1]))
    B_k[:, :k] = (q1 @ u[:, :k]) * root  # zero columns/rows keep every module at rank k
    A_k[:k] = root[:, None] * (vh[:k] @ q2.T)
    return Factors(A_k.astype(np.float32), B_k.astype(np.float32), 1.0, {"energy": energy})


def _svd_check(adapters, rank) -> None:
    if rank is None or rank < 1:
        raise ConfigError(f"--method svd needs --rank K with K >= 1 (got {rank})")


register(
    Method(
        "svd",
        "the exact delta truncated to --rank K by SVD per module (reports the kept energy)",
        _svd,
        check=_svd_check,
        adapter_rank=lambda adapters, rank, module=None: rank,
        needs_rank=True,
    )
)
