"""The live soup: the experts' adapter rebuilt in memory on every slider change, applied to a soup model.

No disk round-trip. Each expert's LoRA factors are read once (mmap, float32) and re-read only
when its files change on disk. On a rebuild the merge method (soups.merge.methods, the registry
`soups merge` uses) turns them into the soup's adapter factors per module, `dW = scale * B @ A`
(exact: `A = stack_rows(w_i s_i A_i)`, `B = stack_cols(B_i)`, DESIGN.md), and the soup model's
targeted weights become `W + dW`, computed in float32 and rounded once to the models' dtype (the
full-merge math; no rounding at all for a float32 base). Every other tensor is shared with the base
model, so a soup costs only the memory of the weights its experts target.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from soups.errors import AdapterError, BaseMismatchError, SoupsError

log = logging.getLogger(__name__)


@dataclass
class ExpertSlot:
    """One slider: an expert, its dimension, its factors in memory, or why it failed to load."""

    spec: str  # as given (a name under experts/ or a path)
    name: str
    path: Path | None = None
    dimension: str | None = None
    adapter: object = None  # soups.io.adapter.Adapter
    factors: dict = field(default_factory=dict)  # module -> (A float32 r x in, B float32 out x r)
    error: str | None = None
    stamp: tuple = ()

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class SoupState:
    """What the last rebuild applied."""

    weights: dict[str, float]  # applied weight per loaded expert (normalized unless normalize=False)
    method: str
    rank: int  # rank of the soup's adapter (the method's, e.g. sum of ranks for exact)
    modules: int
    seconds: float


def _stamp(path: Path) -> tuple:
    files = sorted(p for p in Path(path).iterdir() if p.is_file()) if Path(path).is_dir() else []
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)


def _dimension(adapter) -> str:
    dim = adapter.meta.get("dimension")
    if isinstance(dim, dict):
        dim = dim.get("name")
    return str(dim or adapter.path.name)


class LiveSoup:
    """A soup model beside a base model; `rebuild(weights, ...)` re-merges the experts into it in memory."""

    def __init__(self, base_model, expert_specs: Sequence[str], base_fingerprint: str | None = None) -> None:
        import torch

        names = [Path(s).name if Path(s).is_dir() else str(s) for s in expert_specs]
        if len(set(names)) != len(names):
            raise AdapterError(f"--experts {','.join(map(str, expert_specs))}: an expert is listed twice")
        self.base = base_model
        self.base_fingerprint = base_fingerprint
        self.slots = [ExpertSlot(str(s), n) for s, n in zip(expert_specs, names)]
        for slot in self.slots:
            self._load(slot)
        # the soup shares every parameter with the base, except the weights an expert targets
        self.model = copy.deepcopy(base_model, memo={id(p): p for p in base_model.parameters()})
        self._owned: set[str] = set()
        for slot in self.slots:
            self._own(slot)
        self.model.eval()
        self._torch = torch
        self.state: SoupState | None = None

    # -- experts -----------------------------------------------------------------------------
    def _load(self, slot: ExpertSlot) -> None:
        """Read an expert's factors (validated like `soups merge` does); a failure is kept as the slot's error."""
        from soups.base import check_same_base
        from soups.config import experts_dir
        from soups.io.adapter import load_adapter, resolve_expert
        from soups.io.checkpoint import TensorReader

        slot.factors, slot.adapter, slot.error = {}, None, None
        try:
            slot.path = resolve_expert(slot.spec, experts_dir())
            slot.stamp = _stamp(slot.path)
            adapter = load_adapter(slot.path, name=slot.name)
            if self.base_fingerprint is not None:
                check_same_base({f"expert {slot.name}": adapter.base_fingerprint}, self.base_fingerprint)
            with TensorReader() as reader:
                for module, m in adapter.modules.items():
                    A = m.a_tensor if m.a_tensor is not None else reader.f32(m.a)
                    B = m.b_tensor if m.b_tensor is not None else reader.f32(m.b)
                    self._check_shape(slot.name, module, A, B)
                    slot.factors[module] = (A, B)
            slot.adapter, slot.dimension = adapter, _dimension(adapter)
        except SoupsError as e:
            slot.error = " ".join(str(e).split())
            log.warning("expert %s failed to load: %s", slot.name, slot.error)
        except (OSError, ValueError) as e:  # a file replaced or truncated while we read it
            slot.error = f"expert {slot.name}: cannot read {slot.path} ({e})"

    def _check_shape(self, name: str, module: str, A, B) -> None:
        import torch

        try:
            layer = self.base.get_submodule(module)
        except AttributeError:
            raise BaseMismatchError(f"expert {name}: module {module} is not in the base; wrong --base?") from None
        w = getattr(layer, "weight", None)
        if not isinstance(layer, torch.nn.Linear) or w is None:
            raise AdapterError(f"expert {name}: module {module} is not a linear layer of the base")
        if tuple(w.shape) != (B.shape[0], A.shape[1]):
            raise BaseMismatchError(
                f"expert {name}: module {module} is {B.shape[0]}x{A.shape[1]} but the base has "
                f"{w.shape[0]}x{w.shape[1]}; the expert was trained on another base"
            )
        if w is getattr(self.base.get_input_embeddings(), "weight", None):
            raise AdapterError(f"expert {name}: targets {module}, tied to the embeddings; not supported")

    def _own(self, slot: ExpertSlot) -> None:
        """Give the soup its own copy of each weight this expert targets."""
        import torch

        for module in slot.factors:
            if module not in self._owned:
                layer = self.model.get_submodule(module)
                layer.weight = torch.nn.Parameter(layer.weight.detach().clone(), requires_grad=False)
                self._owned.add(module)

    def refresh(self) -> list[str]:
        """Reload experts whose files changed on disk (e.g. retrained); returns the names reloaded."""
        changed = []
        for slot in self.slots:
            path = slot.path
            if path is None or _stamp(path) != slot.stamp:
                self._load(slot)
                self._own(slot)
                changed.append(slot.name)
        return changed

    @property
    def loaded(self) -> list[ExpertSlot]:
        return [s for s in self.slots if s.ok]

    @property
    def errors(self) -> list[str]:
        return [s.error for s in self.slots if s.error]

    # -- the soup ----------------------------------------------------------------------------
    def rebuild(self, soup) -> SoupState:
        """Merge `soup` (a soups.recipe.Soup over loaded slots' specs) into the soup model, in memory."""
        from soups.merge.methods import Part, get_method

        torch = self._torch
        t0 = time.perf_counter()
        self.refresh()
        by_spec = {s.spec: s for s in self.slots}
        unknown = [e for e in soup.experts if e not in by_spec]
        if unknown:
            raise AdapterError(f"expert {unknown[0]}: not one of the playground's experts")
        failed = [by_spec[e].error for e, w in soup.experts.items() if w != 0 and not by_spec[e].ok]
        if failed:
            raise AdapterError(" | ".join(failed))
        slots = [by_spec[e] for e in soup.experts]
        applied = soup.applied()
        method, params = get_method(soup.method), soup.method_params()
        kept = [(s, w) for s, w in zip(slots, applied) if w != 0 and s.ok]
        adapters = [s.adapter for s, _ in kept]
        method.check(adapters, params)
        targeted = {mod for s, _ in kept for mod in s.factors}
        with torch.no_grad():
            for module in sorted(self._owned):
                soup_w = self.model.get_submodule(module).weight
                base_w = self.base.get_submodule(module).weight
                if module not in targeted:
                    soup_w.copy_(base_w)
                    continue
                parts = []
                for s, w in kept:
                    if module in s.factors:
                        A, B = s.factors[module]
                        parts.append(Part(w, s.adapter.modules[module].scale, A, B, s.adapter.max_rank))
                    else:
                        parts.append(Part(w, 0.0, None, None, s.adapter.max_rank))
                f = method.factors(parts, params)
                merged = base_w.to(torch.float32, copy=True)  # W + dW in float32, rounded once to the soup's dtype
                merged.addmm_(torch.from_numpy(f.B), torch.from_numpy(f.A), alpha=f.scale)
                soup_w.copy_(merged)
        self.state = SoupState(
            weights={s.name: w for s, w in zip(slots, applied)},
            method=soup.method,
            rank=method.rank(adapters, params),
            modules=len(targeted),
            seconds=time.perf_counter() - t0,
        )
        return self.state
