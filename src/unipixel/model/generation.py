"""Generation bookkeeping: which decoder states become ``<|seg|>`` queries, and the structured output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import ModelOutput


@dataclass
class UniPixelGenerateOutput(ModelOutput):
    """What :meth:`UniPixelForConditionalGeneration.generate` returns when SAM 2 frames are given.

    ``sequences``: prompt + generated ids; ``logits``/``scores``: per-step raw/processed logits when requested;
    ``seg_queries``: per sample ``(n, K, d)`` SAM 2 prompt tokens; ``seg_states``: the ``(n, llm_dim)`` pre-norm
    states they came from; ``seg_sources``: per sample, for each query,
    ``("input", position)`` or ``("generated", step)`` — the position of the state in front of ``<|seg|>``;
    ``tracks``: per sample, the SAM 2 tracking result of all its objects (``None`` when it has no ``<|seg|>``).
    """

    sequences: torch.Tensor | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    prenorm_hidden: list[torch.Tensor] | None = None
    seg_queries: list[torch.Tensor] | None = None
    seg_states: list[torch.Tensor] | None = None
    seg_sources: list[list[tuple[str, int]]] | None = None
    tracks: list[Any] | None = None


def _eos_ids(generation_config: Any, kwargs: dict[str, Any]) -> set[int]:
    eos = kwargs.get("eos_token_id", getattr(generation_config, "eos_token_id", None))
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


def collect_seg_queries(
    model: Any,
    input_ids: torch.Tensor,
    gen: Any,
    seg_token_id: int,
    generation_config: Any,
    kwargs: dict[str, Any],
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[list[tuple[str, int]]]]:
    """Gather, per sample, the pre-norm states in front of every ``<|seg|>`` (input ones, then generated ones).

    Returns (prompt tokens ``(n, K, d)``, pre-norm states ``(n, llm_dim)``, sources) per sample.
    """
    states = [h[-1] for h in gen.hidden_states]  # step 0: (B, L, d); later steps: (B, 1, d)
    prompt_len = input_ids.shape[1]
    eos = _eos_ids(generation_config, kwargs)
    queries: list[torch.Tensor] = []
    all_states: list[torch.Tensor] = []
    sources: list[list[tuple[str, int]]] = []
    for b in range(input_ids.shape[0]):
        rows, src = [], []
        for p in (input_ids[b, 1:] == seg_token_id).nonzero().flatten().tolist():
            rows.append(states[0][b, p])
            src.append(("input", p))
        for s, tok in enumerate(gen.sequences[b, prompt_len:].tolist()):
            if tok in eos:
                break
            if tok == seg_token_id and s < len(states):
                rows.append(states[s][b, -1])
                src.append(("generated", s))
        stacked = torch.stack(rows) if rows else states[0].new_zeros(0, states[0].shape[-1])
        all_states.append(stacked)
        queries.append(model.seg_head.prompt_tokens(stacked))
        sources.append(src)
    return queries, all_states, sources
