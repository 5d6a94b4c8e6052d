"""The merge engine: experts + weights + method -> full checkpoint or one LoRA adapter."""
