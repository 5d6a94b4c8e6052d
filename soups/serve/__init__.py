"""Serve many users' soups from one vLLM server: one base, one exact soup adapter per user (multi-LoRA).

- `users.py`: users.yaml -> one `Soup` (soups/recipe.py) per user, bad entries collected, not fatal;
- `adapters.py`: each user's soup built once as an adapter, cached by content hash;
- `server.py`: `serve()` (start vLLM through soups.vllm_server, register users, stop on SIGINT/SIGTERM),
  the state file a running server leaves, and `add_user()` (one more soup into a running server).
"""

from soups.serve.server import ServeOptions, add_user, serve

__all__ = ["ServeOptions", "add_user", "serve"]
