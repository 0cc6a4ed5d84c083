"""Text from a language model: the prompt's continuation, greedy or sampled with a seed, with a key-value cache."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LabError


@torch.no_grad()
def generate(model: nn.Module, prompt: str, tokens: int, temperature: float = 0.0, seed: int = 0,
             context: int | None = None) -> str:
    """The prompt's continuation: greedy (temperature 0) or sampled with a seed; with a key-value cache."""
    if tokens < 1:
        raise LabError(f"--tokens must be at least 1, got {tokens}")
    if temperature < 0:
        raise LabError(f"--temperature must be >= 0, got {temperature}")
    tokenizer = model.tokenizer
    limit = int(context or getattr(model, "context", 0) or 2048)
    if tokens >= limit:
        raise LabError(f"{tokens} new tokens do not fit this model's context of {limit}: ask for at most {limit - 1}.")
    ids = tokenizer.encode(prompt)[-(limit - tokens):] or [0]
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    logits, cache = model.decode_step(torch.tensor([ids]))
    out = []
    for step in range(tokens):
        last = logits[0, -1].float()
        if temperature > 0:
            token = int(torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=generator))
        else:
            token = int(last.argmax())
        out.append(token)
        if step + 1 < tokens:
            logits, cache = model.decode_step(torch.tensor([[token]]), cache)
    return tokenizer.decode(out)
