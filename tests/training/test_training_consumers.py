"""The training files judged by the tools that read them, on files `evalsvc build` wrote.

- LLaMA-Factory 0.9.5 (`make consumers`: its own virtualenv, since it pins an older transformers):
  its `get_train_args`, `load_tokenizer`, `get_template_and_fix_tokenizer` and `get_dataset` run as a
  subprocess (tests/training/consumers/llamafactory_loads.py) on a config made of the
  NAME.llamafactory.yaml evalsvc wrote plus the model and stage a user adds. GLM-4-Voice rows are
  tokenized with the `glm4` template; audio rows are loaded and converted (decoding their audio
  would need the real Qwen-Omni processor), with their relative paths resolved against media_dir.
- TRL 1.16 (in the test environment): the `.trl.jsonl` pairs load with `datasets`, are
  conversational, and `DPOTrainer` trains two steps on them with a tiny causal LM.

Without .venv-consumers the LLaMA-Factory tests skip with the reason (in CI, CI=true, they fail).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from evalsvc.cli import main
from evalsvc.cli.common import EXIT_OK
from evalsvc.engine.tiny import build_tokenizer
from evalsvc.store import Store
from evalsvc.store.migrate import upgrade
from evalsvc.training.glm4voice import GLM4_VOICE_SYSTEM
from tests.helpers import REPO_ROOT, running_in_ci
from tests.training.helpers import ASSESSMENT, Pair, add_scored_run, glm4_voice_tokenizer, score_line

CONSUMER_PYTHON = REPO_ROOT / ".venv-consumers" / "bin" / "python"
LOADER = Path(__file__).parent / "consumers" / "llamafactory_loads.py"
JUDGED = f"{ASSESSMENT}\n{score_line((4, 4, 4, 4))}"
QUERY_TOKENS = [5, 6, 7, 16_383]
SORRY = "I'm so sorry. Losing a job hurts, and feeling useless right now makes sense."
BLUNT = "You should update your resume and apply to more jobs."


def pairs() -> list[Pair]:
    speech = {"query_speech_tokens": QUERY_TOKENS}
    return [
        Pair("g1", "q1", "r1a", (4.5,) * 4, JUDGED, {"response_transcript": SORRY, **speech}),
        Pair(
            "g2", "q1", "r1b", (2.0,) * 4, JUDGED,
            {"response_transcript": BLUNT, "response_speech_tokens": list(range(100, 160)), **speech},
        ),
        Pair("g3", "q2", "r2", (3.0,) * 4, JUDGED, {"response_transcript": SORRY, "query_speech_tokens": [9]}),
        Pair("g4", "q3", "r3", (3.5,) * 4, JUDGED, {"response_transcript": SORRY}),  # no query tokens
    ]  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A scored run (SQLite: the files do not depend on the database) whose audio files exist under
    ROOT/data/audio, and the tokenizers."""
    root = tmp_path_factory.mktemp("consumers")
    audio = root / "data" / "audio"
    audio.mkdir(parents=True)
    for pair in pairs():
        for name in (pair.query, pair.response):
            soundfile.write(audio / f"{name}.wav", np.zeros(1600, dtype=np.float32), 16_000)
    url = f"sqlite:///{root / 'store.sqlite3'}"
    upgrade(url)
    store = Store(url)
    run_id = add_scored_run(store, pairs(), audio_dir=str(audio))
    build_tokenizer().save_pretrained(root / "tiny-tokenizer")
    yield {
        "root": root,
        "audio": audio,
        "common": ["--run", str(run_id), "--database-url", url],
        "glm_tokenizer": str(glm4_voice_tokenizer(root / "glm-tokenizer")),
        "tiny_tokenizer": str(root / "tiny-tokenizer"),
    }
    store.dispose()


def build(workspace: dict[str, Any], *args: str) -> dict[str, Any]:
    """`evalsvc build ...` as a user runs it; its JSON report."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["build", *args, *workspace["common"]])
    assert code == EXIT_OK
    return json.loads(stdout.getvalue())


def config(path: Path, entry: Path | None, **settings: Any) -> str:
    """A LLaMA-Factory training config: evalsvc's entry, plus what a user adds."""
    lines = entry.read_text().splitlines() if entry else []
    settings = {
        "stage": "sft", "do_train": True, "finetuning_type": "lora", "cutoff_len": 8192,
        "output_dir": str(path.parent / f"{path.stem}-out"), "overwrite_cache": True, "report_to": "none",
    } | settings  # fmt: skip
    lines += [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def llamafactory(workspace: dict[str, Any]) -> dict[str, Any]:
    """Every dataset below built by evalsvc, then loaded by LLaMA-Factory in one subprocess."""
    if not CONSUMER_PYTHON.exists():
        reason = "LLaMA-Factory is not installed in .venv-consumers: run `make consumers`"
        if running_in_ci():
            pytest.fail(f"{reason} (CI=true: this test must run)")
        pytest.skip(reason)
    root: Path = workspace["root"]
    glm, tiny = workspace["glm_tokenizer"], workspace["tiny_tokenizer"]
    glm_out = root / "glm"  # not moved: its rows name no file, its entry names its own directory
    reports = {
        "glm_sft": build(workspace, "interleaved", "--out", str(glm_out), "--tokenizer", glm, "--target", "glm4-voice"),
        "glm_dpo": build(
            workspace, "pairs", "--out", str(glm_out), "--tokenizer", glm, "--target", "glm4-voice",
            "--format", "llamafactory",
        ),
        "audio": build(workspace, "interleaved", "--out", str(root / "data" / "reempathy"), "--tokenizer", tiny),
        "judge": build(workspace, "sft", "--out", str(root / "data" / "judge")),
        "rooted": build(
            workspace, "sft", "--out", str(root / "elsewhere"), "--name", "rooted",
            "--audio-root", str(workspace["audio"]),
        ),
    }  # fmt: skip
    # The audio rows' dataset directories move with the audio to another place (another machine).
    moved = root / "moved"
    shutil.move(root / "data", moved)
    omni = {"model_name_or_path": tiny, "template": "qwen3_omni_nothink"}
    checks = {
        "glm_sft": {
            "config": config(root / "glm_sft.yaml", glm_out / "reempathy.llamafactory.yaml", model_name_or_path=glm),
            "tokenize": True,
            "probe": ["<reflection>", "</reflection>", "<|audio_16383|>", "<|begin_of_audio|>"],
        },
        "glm_dpo": {
            "config": config(
                root / "glm_dpo.yaml", None, model_name_or_path=glm, stage="dpo", dataset="dpo_pairs",
                dataset_dir=str(glm_out), template="glm4",
            ),
            "tokenize": True,
            "probe": [],
        },
        "audio": {
            "config": config(root / "audio.yaml", None, dataset="reempathy", dataset_dir=str(moved / "reempathy"), **omni),
            "tokenize": False,
            "probe": [],
        },
        "judge": {
            "config": config(root / "judge.yaml", None, dataset="judge_sft", dataset_dir=str(moved / "judge"), **omni),
            "tokenize": False,
            "probe": [],
        },
        "rooted": {
            "config": config(
                root / "rooted.yaml", None, dataset="rooted", dataset_dir=str(root / "elsewhere"),
                media_dir=str(moved / "audio"), **omni,
            ),
            "tokenize": False,
            "probe": [],
        },
    }  # fmt: skip
    results = run_llamafactory(CONSUMER_PYTHON, list(checks.values()), root)
    return {"moved": moved, "reports": reports} | dict(zip(checks, results, strict=True))


def run_llamafactory(python: Path, checks: list[dict[str, Any]], scratch: Path) -> list[dict[str, Any]]:
    checks_file = scratch / "checks.json"
    checks_file.write_text(json.dumps(checks))
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))
    } | {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(scratch / "hf-home"),
        "DISABLE_VERSION_CHECK": "1",
    }
    completed = subprocess.run(
        [str(python), str(LOADER), str(checks_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_glm4_voice_rows_load_with_llamafactory_glm4_template(llamafactory: dict[str, Any]) -> None:
    assert llamafactory["reports"]["glm_sft"]["written"] == {"reempathy.jsonl": 3}
    assert llamafactory["reports"]["glm_sft"]["dropped"] == {"no_query_speech_tokens": 1}
    assert llamafactory["reports"]["glm_dpo"]["written"] == {"dpo_pairs.jsonl": 1}
    sft, dpo = llamafactory["glm_sft"], llamafactory["glm_dpo"]
    # Every probe is one token: the speech tokens are GLM-4-Voice's, and the markers were added by
    # the add_special_tokens entry evalsvc wrote.
    assert all(len(ids) == 1 for ids in sft["probe"].values()), sft["probe"]
    assert len(sft["rows"]) == 3  # none skipped by LLaMA-Factory
    speech = "".join(f"<|audio_{token}|>" for token in QUERY_TOKENS)
    for row in sft["rows"]:
        text = row["input_ids"]
        assert text.startswith(f"[gMASK]<sop><|system|>\n{GLM4_VOICE_SYSTEM}<|user|>\n<|begin_of_audio|>")
        assert "<|end_of_audio|><|assistant|>\n" in text and "<audio>" not in text
        # The labels are the assistant turn only (the query and system prompt are masked).
        assert "<reflection>" in row["labels"] and "<|begin_of_audio|>" not in row["labels"]
    assert sum(f"<|begin_of_audio|>{speech}<|end_of_audio|>" in row["input_ids"] for row in sft["rows"]) == 2
    [pair] = dpo["rows"]
    assert f"<|user|>\n<|begin_of_audio|>{speech}<|end_of_audio|><|assistant|>" in pair["chosen_input_ids"]
    assert SORRY in pair["chosen_labels"]
    assert BLUNT in re.sub(r"<\|audio_\d+\|>", "", pair["rejected_labels"])  # 13 text, 26 speech tokens


def test_audio_rows_resolve_their_files_after_the_dataset_moved(llamafactory: dict[str, Any]) -> None:
    moved: Path = llamafactory["moved"]
    reempathy, judge, rooted = (llamafactory[name]["rows"] for name in ("audio", "judge", "rooted"))
    assert len(reempathy) == len(judge) == len(rooted) == 4  # every item, none skipped
    for row in reempathy:
        [audio] = row["_audios"]
        assert Path(audio).resolve().parent == moved / "audio" and Path(audio).is_file()
        assert row["_prompt"] == [{"role": "user", "content": "<audio>"}]
    for row in (*judge, *rooted):
        assert len(row["_audios"]) == 2 and all(Path(audio).is_file() for audio in row["_audios"])


def test_trl_trains_dpo_on_the_pairs(workspace: dict[str, Any]) -> None:
    from datasets import load_dataset
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl import DPOConfig, DPOTrainer
    from trl.data_utils import is_conversational

    root: Path = workspace["root"]
    tokenizer_dir = workspace["tiny_tokenizer"]
    report = build(
        workspace, "pairs", "--out", str(root / "dpo"), "--format", "trl", "--tokenizer", tokenizer_dir
    )
    assert report["written"] == {"dpo_pairs.trl.jsonl": 1}
    dataset = load_dataset("json", data_files=str(root / "dpo" / "dpo_pairs.trl.jsonl"), split="train")
    assert len(dataset) == 1 and is_conversational(dataset[0])
    tokenizer = build_tokenizer()
    model_dir = root / "tiny-lm"  # the policy and the reference model load from it, as from a checkpoint
    Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
        )
    ).save_pretrained(model_dir)  # fmt: skip
    tokenizer.save_pretrained(model_dir)
    args = DPOConfig(
        output_dir=str(root / "trl-out"), max_steps=2, per_device_train_batch_size=1, report_to="none",
        save_strategy="no", logging_steps=1, dataloader_num_workers=0, bf16=False, use_cpu=True,
        gradient_checkpointing=False,
    )  # fmt: skip
    trainer = DPOTrainer(model=str(model_dir), args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(np.isfinite(losses))
