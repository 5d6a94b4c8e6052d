"""Evaluation: generate with soups and baselines, score with held-out scorers, report with intervals.

- `generate`: batched chat generation (transformers, or vLLM) from a model, expert or soup directory.
- `systems`: prompt sets, experts' dimensions, soups built on the fly; `soups generate`.
- `scorers`: held-out per-dimension scorers (reading grade, word counts, VADER), not the training rewards.
- `stats`: bootstrap confidence intervals, pairwise win rates, Pareto fronts.
- `cache`: responses cached on disk by model content, prompts and settings.
- `evaluate` + `report`: `soups eval` (soup vs baselines); `sweep` + `plots`: `soups sweep`.
- `judge`: the paper's pairwise judge protocol (one criterion at a time, A/B/TIE, both orders).
- `paper`: `make eval`, the paper's 8 combinations and one sweep, written as a README section.
"""
