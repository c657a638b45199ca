"""Small helpers around ``huggingface_hub``: one-line error messages that never carry a token."""
from __future__ import annotations

import os
import re

_TOKEN_RE = re.compile(r"\b(hf_|api_org_)[A-Za-z0-9]{30,}\b")


def scrub(text: str) -> str:
    """``text`` with any Hugging Face token (the one in use, or anything shaped like one) masked."""
    tokens = {os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")}
    try:
        from huggingface_hub import get_token

        tokens.add(get_token())
    except Exception:  # no token anywhere, or an old client
        pass
    for t in tokens:
        if t and len(t) >= 6:
            text = text.replace(t, "hf_***")
    return _TOKEN_RE.sub(r"\1***", text)


def one_line(e: BaseException) -> str:
    """The first meaningful line of a client error, scrubbed."""
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    text = lines[0] if lines else type(e).__name__
    for extra in lines[1:3]:  # huggingface_hub puts the server's message on the following lines
        if extra.lower().startswith(("repository not found", "revision not found", "entry not found",
                                     "invalid username or password", "you don't have the rights",
                                     "cannot access", "invalid credentials", "offline mode")):
            text += f" ({extra})"
    return scrub(text)
