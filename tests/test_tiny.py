"""Offline tiny checkpoints: tokenizer builder + config factory → a loadable, runnable UniPixel."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoModel, AutoProcessor

import unipixel  # noqa: F401 - registers the Auto classes
from unipixel.tiny import build_tiny_checkpoint
from unipixel.tokenizer import QWEN_SPECIAL_TOKENS, UNIPIXEL_TOKENS, build_tokenizer

CORPUS = ["Please segment the red circle in this image.", "The target is <|seg|>.", "a small dotted green star"] * 30


def test_tokenizer_special_tokens_follow_the_bpe_vocab() -> None:
    tok = build_tokenizer(CORPUS, vocab_size=300)
    ids = tok.convert_tokens_to_ids(QWEN_SPECIAL_TOKENS + UNIPIXEL_TOKENS)
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert tok("is <|seg|>.")["input_ids"][-2] == tok.convert_tokens_to_ids("<|seg|>")
    assert build_tokenizer(CORPUS, vocab_size=300).get_vocab() == tok.get_vocab()  # deterministic
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer(CORPUS, vocab_size=100)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", CORPUS, vocab_size=300)


def test_tiny_checkpoint_loads_with_auto_classes_and_runs(tiny_ckpt) -> None:
    from unipixel.api import UniPixel

    model = AutoModel.from_pretrained(tiny_ckpt)
    proc = AutoProcessor.from_pretrained(tiny_ckpt)
    assert model.config.seg_token_id == proc.tokenizer.convert_tokens_to_ids("<|seg|>")
    sec = model.config.text_config.rope_parameters["mrope_section"]
    assert sum(sec) == model.config.text_config.hidden_size // model.config.text_config.num_attention_heads // 2
    api = UniPixel(model.eval(), proc, min_pixels=3136, max_pixels=25088, max_new_tokens=4)
    frames = np.random.default_rng(0).integers(0, 255, (3, 112, 140, 3), dtype=np.uint8)  # odd T, W % 28 != 0
    res = api.predict(frames, "Please segment the red circle.", response="The target is <|seg|>.")
    assert len(res.objects) == 1 and res.objects[0].masks.array().shape == (3, 112, 140)
