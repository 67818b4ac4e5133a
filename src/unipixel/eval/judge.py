"""LLM judge for VideoRefer-Bench-D: any OpenAI-compatible chat endpoint, configured by URL and model name.

The reference scores detailed region descriptions with GPT-4o (``1.eval_gpt_4o.py`` + ``system.txt``) on four
dimensions, each 0-5: Subject Correspondence, Appearance Description, Temporal Description and Hallucination
Detection, at temperature 0.7; a regex extracts the four numbers and the benchmark score is the mean of the
four per-dimension averages (reference-design §7.4).  The reference's exact ``system.txt`` is not part of the
design notes, so :data:`SYSTEM_PROMPT` below is this project's wording of the same rubric; scores from a
different judge model or wording are comparable only roughly, which the report says.

Why plain HTTP (``urllib``): the judge is optional and must not pull an SDK into the package; any server that
speaks ``POST {base}/chat/completions`` works (OpenAI, vLLM, llama.cpp, Ollama's OpenAI API...).  The API key,
if the endpoint needs one, is read from an environment variable the user names (default ``OPENAI_API_KEY``).

Judgments are appended to ``judgments.jsonl`` one line per sample (flushed + fsynced), so an interrupted
judging pass resumes where it stopped, exactly like the prediction records.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIMENSIONS = ("subject", "appearance", "temporal", "hallucination")
_LABELS = {
    "subject": "Subject Correspondence",
    "appearance": "Appearance Description",
    "temporal": "Temporal Description",
    "hallucination": "Hallucination Detection",
}

SYSTEM_PROMPT = """You are an expert evaluator of video object descriptions. You are given the ground-truth \
description of one highlighted object in a video and a model's description of the same object. Score the \
model's description on four dimensions, each an integer from 0 (worst) to 5 (best):
1. Subject Correspondence: does it describe the same object (category, identity) as the ground truth?
2. Appearance Description: how accurately does it describe the object's appearance (colour, shape, parts, \
clothing, size)?
3. Temporal Description: how accurately does it describe the object's actions, motion and changes over time?
4. Hallucination Detection: does it avoid details that are not supported by the ground truth (5 = nothing \
invented)?
Answer with exactly four lines and nothing else:
Subject Correspondence: <0-5>
Appearance Description: <0-5>
Temporal Description: <0-5>
Hallucination Detection: <0-5>"""

USER_TEMPLATE = "Ground-truth description:\n{reference}\n\nModel description:\n{prediction}"


class JudgeError(RuntimeError):
    """The endpoint failed or answered something that does not contain the four scores."""


def parse_scores(text: str) -> dict[str, float]:
    """The four 0-5 scores from a judge answer (``"Subject Correspondence: 4"``...; case-insensitive)."""
    out: dict[str, float] = {}
    for key, label in _LABELS.items():
        m = re.search(rf"{label.split()[0]}[^:\n]*:\s*\**\s*([0-5](?:\.\d+)?)", text, flags=re.IGNORECASE)
        if m is None:
            raise JudgeError(f"judge answer has no '{label}: N' score: {text[:200]!r}")
        out[key] = float(m.group(1))
    return out


@dataclass(frozen=True)
class JudgeConfig:
    """Where the judge lives.  ``url`` is the API base (``http://host:8000/v1``) or the full
    ``.../chat/completions`` address; ``api_key_env`` names the environment variable holding a key (optional)."""

    url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.7
    timeout_s: float = 120.0
    retries: int = 3

    @property
    def endpoint(self) -> str:
        u = self.url.rstrip("/")
        return u if u.endswith("/chat/completions") else u + "/chat/completions"

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "model": self.model, "temperature": self.temperature}


class OpenAICompatibleJudge:
    """Scores (reference, prediction) pairs through ``POST /chat/completions``."""

    def __init__(self, config: JudgeConfig, opener: Callable[..., Any] | None = None) -> None:
        self.config = config
        self._open = opener or urllib.request.urlopen

    def _request(self, reference: str, prediction: str) -> str:
        body = {
            "model": self.config.model,
            "temperature": self.config.temperature,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": USER_TEMPLATE.format(reference=reference, prediction=prediction)},
            ],
        }
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.config.endpoint, data=json.dumps(body).encode(), headers=headers)
        with self._open(req, timeout=self.config.timeout_s) as resp:
            data = json.loads(resp.read().decode("utf-8"))
        try:
            return str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"unexpected judge response: {str(data)[:200]}") from None

    def score(self, reference: str, prediction: str) -> dict[str, Any]:
        """Four scores + the raw answer; retries transient failures with a short back-off."""
        last: Exception | None = None
        for attempt in range(max(1, self.config.retries)):
            try:
                raw = self._request(reference, prediction)
                return {**parse_scores(raw), "raw": raw}
            except (urllib.error.URLError, TimeoutError, JudgeError, json.JSONDecodeError) as err:
                last = err
                time.sleep(min(2.0**attempt, 10.0) * 0.5)
        raise JudgeError(f"judge {self.config.endpoint} failed after {self.config.retries} tries: {last}")


def judge_records(
    records: Iterable[Mapping[str, Any]],
    judge: OpenAICompatibleJudge,
    path: Path,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Judge every caption record not yet in ``path`` (JSONL, appended atomically per line); return all
    judgments by sample id.  Records that failed (no prediction) score 0 on every dimension."""
    from .runner import append_record, read_jsonl

    done = {j["id"]: j for j in read_jsonl(path)[0]}
    todo = [r for r in records if r.get("scores", {}).get("kind") == "caption" and r["id"] not in done]
    for k, r in enumerate(todo):
        if r.get("prediction") is None:
            j = {d: 0.0 for d in DIMENSIONS} | {"raw": None}
        else:
            j = judge.score(str(r.get("reference") or ""), str(r["prediction"]))
        entry = {"id": r["id"], **j, "judge": judge.config.describe()}
        append_record(path, entry)
        done[r["id"]] = entry
        if progress:
            progress(k + 1, len(todo))
    return done
