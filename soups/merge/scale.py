"""Scale one expert's LoRA delta: the expert base + alpha x s B A, written as an expert again (`soups scale-expert`).

Task-vector scaling (Ilharco et al. 2023, "Editing models with task arithmetic"; WiSE-FT, Wortsman et al. 2022,
for alpha < 1): alpha > 1 pushes the expert further along what it learned, alpha < 1 pulls it back toward the
base. Only each module's lora_B is multiplied (in float32, rounded once to its stored dtype); lora_A, the adapter
config (ranks, alphas, targets) and every other file stay as they were, so the scaled expert merges with the
others by every method that merged the original. Tensors stream one at a time (lora_A is copied byte for byte);
expert.json gains a `scale` stage (alpha, the source's path and its sha256 as soup.json records experts).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from soups.errors import ConfigError
from soups.io.adapter import WEIGHTS_NAME, load_adapter
from soups.io.atomic import atomic_dir
from soups.io.checkpoint import OutTensor, TensorReader, from_f32, write_shards
from soups.merge.provenance import expert_sha256

MAX_ALPHA = 100.0


def scale_expert(src: Path | str, alpha: float, out: Path | str, *, force: bool = False) -> dict:
    """Write `src` with its delta multiplied by `alpha` to `out` (atomically); returns the new expert.json."""
    src, out = Path(src), Path(out)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) \
            or not 0 < alpha <= MAX_ALPHA:
        raise ConfigError(f"--alpha {alpha!r}: give a number in (0, {MAX_ALPHA:g}] (1 keeps the expert as it is)")
    adapter = load_adapter(src)  # validated; pickled weights are refused
    if out.resolve() == src.resolve():
        raise ConfigError(f"--out {out}: is the source expert; write the scaled expert to another directory")
    with TensorReader() as reader, atomic_dir(out, force=force) as tmp:  # refuses an existing --out first
        stage = {"stage": "scale", "alpha": float(alpha), "from": str(src.absolute()),
                 "from_sha256": expert_sha256(src)}
        meta = {**adapter.meta, "stages": [*adapter.meta.get("stages", []), stage]}
        plan = []
        for m in adapter.modules.values():
            plan.append(OutTensor(m.a.name, m.a.dtype, m.a.shape, copy_from=m.a))
            plan.append(OutTensor(m.b.name, m.b.dtype, m.b.shape,
                                  produce=lambda b=m.b: from_f32(reader.f32(b) * float(alpha), b.dtype)))
        write_shards(tmp, plan, shard_size=1 << 62, prefix=WEIGHTS_NAME.removesuffix(".safetensors"))  # one file
        for f in sorted(src.iterdir()):  # the config and any other file (README, tokenizer, ...) unchanged
            if f.is_file() and f.name not in (WEIGHTS_NAME, "expert.json"):
                shutil.copy2(f, tmp / f.name)
        (tmp / "expert.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
