"""Merge methods, a registry: each turns the experts' LoRA factors at one module into soup factors.

A method returns `Factors(A, B, scale)` with the soup's delta `dW = scale * B @ A` (DESIGN.md,
"Merge math"). The engine adds dW to the base weight (full output) or writes A and B as one PEFT
adapter whose config the method declares (`adapter_config`), so every method serves both formats.

A method also declares its parameters as a pydantic model (their help text is the field
description; the recipe schema, `--param KEY=VALUE` and the model card read them from here), a
one-line help (for `--method`'s help), a label (plots), a check run before any write, and the
rank of its adapter. Numbers a method reports per module (`Factors.info`, e.g. svd's kept energy)
are summarised by the engine (min and mean over modules) without knowing what they mean.

Adding a method is one `register(Method(...))` call plus its test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
    info: dict[str, float] = field(default_factory=dict)  # per-module numbers to report, e.g. {"energy": 0.98}


class NoParams(BaseModel):
    """A method without parameters."""

    model_config = ConfigDict(extra="forbid")


def _stacked_config(adapters, params, rank: int) -> dict[str, Any]:
    """Factors carry the scale: r = lora_alpha = R, no patterns."""
    return {"r": rank, "lora_alpha": rank, "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {}}


@dataclass(frozen=True)
class Method:
    """A merge method (module docstring). `params` is a pydantic model of its parameters."""

    name: str
    help: str
    factors: Callable[[Sequence[Part], Any], Factors]  # (parts at one module, params) -> Factors
    label: str = ""
    params: type[BaseModel] = NoParams
    exact_at_vertex: bool = False  # one expert alone merges to that expert exactly (sweeps reuse exact's answers)
    check: Callable[[Sequence[Any], Any], None] = lambda adapters, params: None
    rank: Callable[..., int] = lambda adapters, params, module=None: 0  # adapter rank; module=None: the config's r
    adapter_config: Callable[[Sequence[Any], Any, int], dict[str, Any]] = _stacked_config

    def describe(self) -> str:
        """`name` (`param`, ...): help, for --help texts."""
        names = list(self.params.model_fields)
        return f"{self.name}" + (f" (--param {', '.join(names)})" if names else "") + f": {self.help}"


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry (by its name); returns it."""
    METHODS[method.name] = method
    return method


def get_method(name: str, flag: str = "--method") -> Method:
    """The method called `name`; an unknown name lists the valid ones (`flag` is how the user wrote it)."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"{flag} {name!r} is unknown; choose one of: {', '.join(METHODS)}") from None


def methods_help() -> str:
    """Every method's `describe()` line, for the `--method` option's help."""
    return " | ".join(m.describe() for m in METHODS.values())


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


def _exact(parts: Sequence[Part], params) -> Factors:
    """exact soup: dW = sum_i w_i s_i B_i A_i, as one rank-(sum r_i) factor pair (DESIGN.md)."""
    A, B = _stack(parts, pad=True)
    return Factors(A, B, 1.0)


register(
    Method(
        "exact",
        "the true weighted sum of the experts' deltas, sum_i w_i s_i B_i A_i (adapter rank = sum of ranks)",
        _exact,
        label="exact soup (sum of deltas)",
        exact_at_vertex=True,
        rank=lambda adapters, params, module=None: sum(a.max_rank for a in adapters),
    )
)


def _linear_check(adapters, params) -> None:
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


def _linear(parts: Sequence[Part], params) -> Factors:
    """The paper's averaging: A = sum w_i A_i, B = sum w_i B_i, scale s (cross terms w_i w_j B_i A_j remain)."""
    kept = [p for p in parts if p.A is not None]
    A = sum(p.weight * p.A for p in kept)
    B = sum(p.weight * p.B for p in kept)
    return Factors(A, B, kept[0].scale)


def _linear_config(adapters, params, rank: int) -> dict[str, Any]:
    """The experts' own r / alpha / rsLoRA / patterns (equal, by the check)."""
    ref = adapters[0].config
    return {k: ref.get(k) for k in ("r", "lora_alpha", "use_rslora")} | {
        "rank_pattern": ref.get("rank_pattern") or {},
        "alpha_pattern": ref.get("alpha_pattern") or {},
    }


register(
    Method(
        "linear",
        "the Personalized Soups paper's averaging of each LoRA matrix (A and B separately); NOT the weighted "
        "sum of deltas (adds cross terms); needs equal ranks, alphas and targets",
        _linear,
        label="paper averaging (linear)",
        exact_at_vertex=True,
        check=_linear_check,
        rank=lambda adapters, params, module=None: (
            adapters[0].modules[module].rank if module else adapters[0].config.get("r", adapters[0].max_rank)
        ),
        adapter_config=_linear_config,
    )
)


class SvdParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rank: int = Field(..., ge=1, description="rank K the exact delta of every module is truncated to")


def _svd(parts: Sequence[Part], params: SvdParams) -> Factors:
    """exact delta truncated to rank k by SVD: B = U sqrt(S), A = sqrt(S) V^T; reports kept energy."""
    import numpy as np

    rank = params.rank
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


def _svd_check(adapters, params: SvdParams) -> None:
    """K at most the exact soup's rank (sum of the kept experts' ranks): beyond it SVD only pads zeros."""
    exact = sum(a.max_rank for a in adapters)
    if params.rank > exact:
        raise ConfigError(f"--rank {params.rank}: more than the exact soup's rank {exact} (the sum of the experts' "
                          f"ranks), where SVD keeps everything; use --rank {exact} or less, or --method exact")


register(
    Method(
        "svd",
        "the exact delta truncated to rank K <= the exact rank by SVD per module (reports the kept energy)",
        _svd,
        label="exact, truncated by SVD",
        params=SvdParams,
        check=_svd_check,
        rank=lambda adapters, params, module=None: params.rank,
    )
)
