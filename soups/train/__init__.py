"""Training: one LoRA expert per preference dimension (PPO, RLOO or GRPO via TRL), and reward models.

`soups.train.expert.train_expert(dim, ...)` is the recipe; every TRL-specific line lives in
`soups.train.trl_backend`; `soups.train.reward_model.train_reward_model` trains Bradley-Terry reward models.
"""
