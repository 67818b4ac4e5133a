"""Training a UniPixel from random weights: SAM 2 initialisation, the multimask switch, prompt pre-training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unipixel import UniPixelForConditionalGeneration
from unipixel.sam2.tracker import _decode, _use_multimask, encode_frames, forward_train, track
from unipixel.tiny import build_tiny_checkpoint, tiny_sam2_meta

CORPUS = ["Please segment the red circle in this image.", "The target is <|seg|>.", "a small dotted green star"] * 30


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("scratch")
    single = build_tiny_checkpoint(
        root / "single", CORPUS, vocab_size=300, sam2=tiny_sam2_meta(multimask=False), tie_ref_pe=True
    )
    hf_init = build_tiny_checkpoint(root / "hf_init", CORPUS, vocab_size=300, sam2_default_init=False)
    return {"single": single, "hf_init": hf_init}


def _load(path):
    return UniPixelForConditionalGeneration.from_pretrained(str(path)).eval()


def _changed_keys(before_dir, after_dir) -> set[str]:
    before, after = _load(before_dir).state_dict(), _load(after_dir).state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    from unipixel.synth.cli import main as synth_main

    data = tmp_path_factory.mktemp("synth")
    synth_main(["--seed", "5", "--split", "train", "--out", str(data), "--num-images", "4", "--num-videos", "1",
                "--min-frames", "4", "--max-frames", "4", "--workers", "1"])  # fmt: skip
    return data


def test_sam2_position_encodings_are_one_matrix(ckpts) -> None:
    m = _load(ckpts["single"])
    img = m.sam2.shared_image_embedding.positional_embedding
    assert torch.equal(m.sam2.prompt_encoder.shared_embedding.positional_embedding, img)
    assert torch.equal(m.ref_prompt.ref_encoder.shared_embedding.positional_embedding, img)  # tie_ref_pe
    plain = _load(ckpts["hf_init"])  # default: the ref encoder keeps its own (reference behaviour)
    assert torch.equal(plain.sam2.prompt_encoder.shared_embedding.positional_embedding,
                       plain.sam2.shared_image_embedding.positional_embedding)  # fmt: skip
    assert not torch.equal(plain.ref_prompt.ref_encoder.shared_embedding.positional_embedding,
                           plain.sam2.shared_image_embedding.positional_embedding)  # fmt: skip


def _click_masks(sam2) -> torch.Tensor:
    frames = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    feats = encode_frames(sam2, frames)
    pe = sam2.get_image_wide_positional_embeddings()
    s0, s1, vision = feats.get(0)
    pix = (vision + sam2.no_memory_embedding.reshape(1, -1, 1, 1)).expand(2, -1, -1, -1)
    points = torch.tensor([[[[20.0, 20.0]]], [[[100.0, 100.0]]]])
    labels = torch.ones(2, 1, 1, dtype=torch.int32)
    with torch.no_grad():
        return _decode(sam2, pix, s0, s1, None, pe, False, True, points, labels).high_res_masks


def test_default_init_gives_prompt_dependent_masks(ckpts) -> None:
    """transformers' N(0, 0.02) init makes a small SAM 2's masks ~1e-4 and blind to the prompt; PyTorch's doesn't."""
    hf = _click_masks(_load(ckpts["hf_init"]).sam2)
    ours = _click_masks(_load(ckpts["single"]).sam2)
    assert hf.std() < 1e-2 and (hf[0] - hf[1]).abs().max() < 1e-2
    assert ours.std() > 1e-2 and (ours[0] - ours[1]).abs().max() > 1e-2


def test_multimask_switch_gives_one_mask_everywhere(ckpts) -> None:
    sam2 = _load(ckpts["single"]).sam2
    assert not _use_multimask(sam2, 0) and not _use_multimask(sam2, 1) and not _use_multimask(sam2, 0, False)
    frames = torch.randn(3, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    hidden = torch.randn(2, 2, sam2.config.mask_decoder_config.hidden_size)
    outs = forward_train(sam2, encode_frames(sam2, frames), hidden)
    assert all(o["multimasks"].shape[1] == 1 and o["ious"].shape[1] == 1 for o in outs)
    with torch.no_grad():
        res = track(sam2, encode_frames(sam2, frames), hidden, frame_size=(64, 80))
    assert res.binary_masks.shape == (2, 3, 64, 80)
    released = _load(ckpts["hf_init"]).sam2  # SAM 2.1 flags: candidates for 0-1 points, on every frame
    assert _use_multimask(released, 0) and _use_multimask(released, 1) and _use_multimask(released, 0, False)
    assert not _use_multimask(released, 2)


def test_sam2_prompt_pretraining_trains_only_sam2(ckpts, synth_data, tmp_path) -> None:
    from unipixel.train.dataset import load_samples_jsonl
    from unipixel.train.sam2_prompts import collect_frame_objects, prompt_batch, train_sam2_prompts

    samples = load_samples_jsonl(synth_data / "samples.jsonl")
    items = collect_frame_objects(samples)
    assert items and all(len(set(json.dumps(r, sort_keys=True) for r in fo.rles)) == len(fo.rles) for fo in items)
    union_ids = [s for s in samples if s.meta.get("multi") == "union"]
    for s in union_ids:  # a union mask of a multi-target expression is never used as one object
        union = {json.dumps(r, sort_keys=True) for r in s.objects[0].masks.values()}
        assert not union & {json.dumps(r, sort_keys=True) for fo in items for r in fo.rles}

    frames, prompts = prompt_batch(items[:3], 128, np.random.default_rng(0), box_prob=0.0)
    assert frames.shape == (3, 3, 128, 128)
    for points, labels, masks in prompts:  # every click lies on its object (up to the resize's rounding)
        assert (labels[:, 0, 0] == 1).all() and (labels[:, 0, 1] == -1).all()
        for p, m in zip(points[:, 0, 0], masks, strict=True):
            x, y = int(p[0]), int(p[1])
            assert m[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].any()
    from unipixel.data.masks import decode_rle
    from unipixel.visual_prompts import resize_mask

    for fo, (_, _, masks) in zip(items[:3], prompts, strict=True):  # labels resized as in joint training
        expected = torch.stack([resize_mask(decode_rle(r).astype(bool), 128) for r in fo.rles])
        assert torch.equal(masks, expected)

    out = train_sam2_prompts(ckpts["single"], synth_data / "samples.jsonl", tmp_path / "pre", steps=2, batch_size=2)
    changed = _changed_keys(ckpts["single"], out)
    assert changed and all(k.startswith("sam2.") for k in changed)
    assert json.loads((out / "sam2_prompt_pretraining.json").read_text())["steps_done"] == 2


def test_sam2_prompt_pretraining_enc_lr_zero_freezes_the_image_encoder(ckpts, synth_data, tmp_path) -> None:
    from unipixel.train.sam2_prompts import train_sam2_prompts

    samples = synth_data / "samples.jsonl"
    out = train_sam2_prompts(ckpts["single"], samples, tmp_path / "pre", steps=2, batch_size=2, enc_lr=0)
    changed = _changed_keys(ckpts["single"], out)
    assert changed and all(k.startswith("sam2.") and not k.startswith("sam2.vision_encoder.") for k in changed)
    assert json.loads((out / "sam2_prompt_pretraining.json").read_text())["enc_lr"] == 0


def test_sam2_prompt_pretraining_decays_weights_not_biases_or_norms(ckpts) -> None:
    from unipixel.train.sam2_prompts import sam2_param_groups

    sam2 = _load(ckpts["single"]).sam2
    names = {id(p): n for n, p in sam2.named_parameters()}
    enc = {id(p) for p in sam2.vision_encoder.parameters()}
    groups = sam2_param_groups(sam2, 1e-3, 1e-4, 0.1)
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(names) and len(set(seen)) == len(seen)  # every tensor once
    for g in groups:
        plain = [names[id(p)] for p in g["params"]]
        assert g["lr"] == (1e-4 if id(g["params"][0]) in enc else 1e-3)
        assert all((id(p) in enc) == (id(g["params"][0]) in enc) for p in g["params"])
        if g["weight_decay"]:
            assert all(not n.endswith(".bias") and "norm" not in n for n in plain)
        else:
            assert all(n.endswith(".bias") or "norm" in n for n in plain)


def test_mimetic_decoder_init_matches_a_click_to_its_location(tmp_path) -> None:
    from unipixel.model.init import mimetic_sam2_decoder

    path = build_tiny_checkpoint(
        tmp_path / "m", CORPUS, vocab_size=300, sam2=tiny_sam2_meta(d_model=64, embed_dim=24, multimask=False),
        sam2_decoder_heads=2, sam2_mimetic=True,
    )  # fmt: skip
    sam2 = _load(path).sam2
    assert sam2.config.mask_decoder_config.num_attention_heads == 2
    attn = sam2.mask_decoder.transformer.layers[0].cross_attn_image_to_token
    wq, wk = attn.q_proj.weight, attn.k_proj.weight
    assert torch.equal(wq, wk) and torch.allclose(wq @ wq.T, 1.5**2 * torch.eye(wq.shape[0]), atol=1e-5)
    pe = sam2.get_image_wide_positional_embeddings()[0]  # (C, h, w): the grid's encoding
    h, w = pe.shape[1:]
    size = sam2.config.prompt_encoder_config.image_size
    hits = 0
    for gy, gx in [(1, 6), (4, 4), (6, 1), (7, 7)]:
        click = torch.tensor([[[[(gx + 0.5) * size / w - 0.5, (gy + 0.5) * size / h - 0.5]]]])
        code = sam2.prompt_encoder.shared_embedding(click + 0.5, (size, size))[0, 0, 0]
        score = torch.einsum("oc,c,od,dhw->hw", wq, code, wk, pe)  # (W_q PE(click)) · (W_k PE(cell))
        hits += divmod(int(score.argmax()), w) == (gy, gx)
    assert hits == 4
    # without it, q and k are unrelated draws
    plain = _load(build_tiny_checkpoint(tmp_path / "p", CORPUS, vocab_size=300, sam2_decoder_heads=2)).sam2
    a = plain.mask_decoder.transformer.layers[0].cross_attn_image_to_token
    assert not torch.equal(a.q_proj.weight, a.k_proj.weight)
    mimetic_sam2_decoder(plain)
    assert torch.equal(a.q_proj.weight, a.k_proj.weight)


def test_data_root_follows_the_reference_layout(synth_data, tmp_path) -> None:
    """``--data-root data`` finds a dataset in the reference's data/ layout (its registered folder), and a plain
    ``data/<name>`` folder still works."""
    from unipixel.data.registry import dataset_root
    from unipixel.train.dataset import MixedSamples, parse_dataset_spec

    data = tmp_path / "data"
    (data / "synthetic").mkdir(parents=True)
    (data / "synthetic" / "train").symlink_to(synth_data, target_is_directory=True)
    assert dataset_root("synthetic", data, "train") == data / "synthetic" / "train"
    assert dataset_root("refcoco", data, "train") == data / "lisa" / "refer_seg"
    assert dataset_root("revos", data, "train") == data / "revos"
    mixed = MixedSamples.from_specs([parse_dataset_spec("synthetic")], data, "train")
    assert len(mixed) > 0
