"""A real 2-process data-parallel training run on CPU (gloo), launched with ``torch.distributed.run``.

Stage 2 (seg head, SAM 2 loss with its cross-rank all-reduce of the object count), two steps of two data types:
both ranks must see one data type per step (different samples), and end with identical parameters.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    import torch

    from test_train_common import CKPT, PIXELS, load_golden_model, make_samples, training_args
    from unipixel.processing import UniPixelProcessor
    from unipixel.train.collator import UniPixelCollator
    from unipixel.train.dataset import FeatureConfig, UniPixelTrainDataset
    from unipixel.train.stages import apply_tuning, get_stage
    from unipixel.train.trainer import UniPixelTrainer

    out = Path(sys.argv[1])
    rank = int(os.environ["RANK"])
    proc = UniPixelProcessor.from_pretrained(CKPT)
    preset = get_stage(2)
    model = apply_tuning(load_golden_model(), preset)
    samples = make_samples(out / f"data{rank}", n=4, frames=2, kinds=("seg", "ref"))
    ds = UniPixelTrainDataset(samples, proc, FeatureConfig(num_frames=2, sam2_image_size=128, **PIXELS))
    base = UniPixelCollator(proc.tokenizer.pad_token_id)
    seen = []

    def collate(features):
        seen.append([[f["sample_id"], f["data_type"]] for f in features])
        return base(features)

    args = training_args(out / "run", max_steps=2, learning_rate=preset.learning_rate, ddp_backend="gloo")
    trainer = UniPixelTrainer(model=model, args=args, train_dataset=ds, data_collator=collate,
                              processing_class=proc, preset=preset)
    assert trainer.args.world_size == 2, trainer.args.world_size
    trainer.train()
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    torch.save(params, out / f"rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps({"seen": seen, "loss": trainer.state.log_history[0]["loss"]}))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_training_keeps_ranks_in_sync(tmp_path: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(SRC), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), str(script), str(tmp_path),
    ]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-6000:]

    p0, p1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert set(p0) == set(p1) and all(n.startswith("seg_head.") for n in p0)
    for name in p0:
        assert torch.equal(p0[name], p1[name]), name
    from test_train_common import load_golden_model

    golden = load_golden_model().state_dict()
    assert any(not torch.equal(p0[n], golden[n]) for n in p0)  # the step really trained

    seen0, seen1 = (json.loads((tmp_path / f"rank{r}.json").read_text())["seen"] for r in (0, 1))
    assert len(seen0) == len(seen1) == 2
    for b0, b1 in zip(seen0, seen1, strict=True):
        assert {t for _, t in b0} == {t for _, t in b1} and len({t for _, t in b0 + b1}) == 1  # one type per step
        assert {i for i, _ in b0}.isdisjoint({i for i, _ in b1})  # different samples on the two ranks
