"""Tiny local models for fast tests: a random Llama with the default base's real tokenizer.

Nothing comes from a hub: the tokenizer and chat template are copied from the prepared
embedded default base (SmolLM2-135M-Instruct, see soups/base_default.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def copy_tokenizer(src: Path, dst: Path) -> None:
    for name in TOKENIZER_FILES:
        if (Path(src) / name).is_file():
            shutil.copy2(Path(src) / name, Path(dst) / name)


def make_tiny_llama(
    out: Path,
    *,
    dtype: str = "float32",
    tie: bool = True,
    hidden: int = 64,
    layers: int = 2,
    seed: int = 0,
    tokenizer_from: Path | None = None,
    vocab_size: int | None = None,
) -> Path:
    """Save a random Llama-architecture causal LM (safetensors) with a real tokenizer to `out`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if tokenizer_from is not None and vocab_size is None:
        from transformers import AutoTokenizer

        vocab_size = len(AutoTokenizer.from_pretrained(tokenizer_from))
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size or 512,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # non-trivial weights so merges are visible at bf16
        for p in model.parameters():
            p.normal_(0, 0.05)
    model = model.to(getattr(torch, dtype))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2).save_pretrained(out)
    if tokenizer_from is not None:
        copy_tokenizer(Path(tokenizer_from), out)
    return out


def make_lora_expert(
    base: Path,
    out: Path,
    *,
    r: int = 4,
    alpha: int = 8,
    targets: tuple[str, ...] = ("q_proj", "v_proj"),
    rslora: bool = False,
    seed: int = 1,
    rank_pattern: dict | None = None,
    alpha_pattern: dict | None = None,
    use_dora: bool = False,
    bias: str = "none",
    modules_to_save: list[str] | None = None,
) -> Path:
    """A PEFT LoRA adapter on `base` with random (non-zero) A and B, saved as safetensors."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cfg = LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=list(targets),
        use_rslora=rslora,
        rank_pattern=rank_pattern or {},
        alpha_pattern=alpha_pattern or {},
        use_dora=use_dora,
        bias=bias,
        modules_to_save=modules_to_save,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.2)
    peft_model.save_pretrained(out, safe_serialization=True)
    return Path(out)
