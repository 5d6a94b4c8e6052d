"""Serve many users' soups behind one OpenAI-compatible address, vLLM answering.

- `users.py`: users.yaml -> one `Soup` (soups/recipe.py) per user, bad entries collected, not fatal;
  a request's `soup:WEIGHTS` model name -> its Soup;
- `builds.py`: each soup built once, cached by content hash (an adapter, or a merged checkpoint);
- `engines.py`: the vLLM servers and the two modes: `lora` (one engine, one adapter per soup) and
  `merged` (one engine per soup's merged checkpoint, bounded, least recently used stopped first);
- `router.py`: users and request-named soups -> engine, and the lock that serialises every change;
- `front.py`: the authenticated address clients call (proxied to vLLM, routed by `model`);
- `state.py`: the state and key files a running server leaves; `client.py`: `soups serve add`;
- `server.py`: `serve()`: build, start, answer until SIGINT/SIGTERM.
"""

from soups.serve.client import add_user
from soups.serve.server import ServeOptions, serve

__all__ = ["ServeOptions", "add_user", "serve"]
