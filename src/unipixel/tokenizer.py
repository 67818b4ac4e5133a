"""Offline tokenizers: UniPixel's special tokens, the chat template, and a small byte-level BPE builder.

Released checkpoints ship their tokenizer; tests and the built-in model need one built without the hub. The
builder trains a byte-level BPE (Qwen's pre-tokenizer regex) on a corpus and appends the Qwen2.5-VL special
tokens and ``<|ref|>``, ``<|seg|>``, ``<|mem|>`` after the BPE vocabulary, in Qwen's order.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

REF_TOKEN, SEG_TOKEN, MEM_TOKEN = "<|ref|>", "<|seg|>", "<|mem|>"
UNIPIXEL_TOKENS = [REF_TOKEN, SEG_TOKEN, MEM_TOKEN]
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]  # fmt: skip
QWEN_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The Qwen2-VL chat format (ChatML; first user turn may hold images/videos; default system prompt).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(
    corpus: Iterable[str], vocab_size: int = 448, out_dir: str | Path | None = None
) -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE on ``corpus`` and add the Qwen and UniPixel special tokens after it.

    ``vocab_size`` is the BPE part (≥ 256 + merges); special tokens get the ids that follow, so ``<|ref|>``,
    ``<|seg|>``, ``<|mem|>`` are the last three ids. Deterministic for a given corpus.
    """
    if vocab_size < 257:
        raise ValueError(f"vocab_size must exceed the 256 byte symbols, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    # Special tokens take the ids right after the BPE vocabulary, in Qwen's order.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS + UNIPIXEL_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN_SPECIAL_TOKENS + UNIPIXEL_TOKENS,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def add_unipixel_tokens(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """Add ``<|ref|>``, ``<|seg|>``, ``<|mem|>`` (as the reference's train.py does) and return their ids."""
    present = set(tokenizer.get_vocab())
    missing = [t for t in UNIPIXEL_TOKENS if t not in present]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return {
        "ref_token_id": tokenizer.convert_tokens_to_ids(REF_TOKEN),
        "seg_token_id": tokenizer.convert_tokens_to_ids(SEG_TOKEN),
        "mem_token_id": tokenizer.convert_tokens_to_ids(MEM_TOKEN),
    }
