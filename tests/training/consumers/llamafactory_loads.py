"""Run inside .venv-consumers (LLaMA-Factory's own virtualenv): load datasets written by evalsvc.

    python llamafactory_loads.py CHECKS.json  ->  one JSON object on stdout

CHECKS.json is a list of checks, each {"config": PATH, "tokenize": bool, "probe": [token, ...]}. The
config is a LLaMA-Factory training YAML, parsed by `get_train_args` as `llamafactory-cli train` does.
With `tokenize`, the dataset goes through LLaMA-Factory's `get_dataset` (template, tokenizer with
its added special tokens, label masking) and each sample comes back decoded; without, only its
loading and conversion to LLaMA-Factory's standard columns (`_prompt`, `_response`, `_system`,
`_audios` with media paths resolved), which is all that can run without decoding audio.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.data.loader import _get_merged_dataset
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer
from omegaconf import OmegaConf


def main(checks_path: str) -> None:
    with open(checks_path, encoding="utf-8") as stream:
        checks = json.load(stream)
    print(json.dumps([run_check(check) for check in checks]))


def run_check(check: dict[str, Any]) -> dict[str, Any]:
    config = OmegaConf.to_container(OmegaConf.load(check["config"]))
    model_args, data_args, training_args, finetuning_args, _ = get_train_args(config)
    stage = "rm" if finetuning_args.stage in ("rm", "dpo") else finetuning_args.stage
    if not check["tokenize"]:
        dataset = _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, stage)
        return {"rows": [dict(row) for row in dataset]}
    tokenizer_module = load_tokenizer(model_args)
    tokenizer = tokenizer_module["tokenizer"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, stage, **tokenizer_module)[
        "train_dataset"
    ]
    return {
        "rows": [_decoded(tokenizer, row) for row in dataset],
        "probe": {token: tokenizer.encode(token, add_special_tokens=False) for token in check["probe"]},
    }


def _decoded(tokenizer: Any, row: dict[str, Any]) -> dict[str, Any]:
    """Each token sequence of a tokenized row as text; labels as the text of their trained tokens."""
    decoded: dict[str, Any] = {}
    for key, ids in row.items():
        if key.endswith("input_ids"):
            decoded[key] = tokenizer.decode(ids, skip_special_tokens=False)
            decoded[key + "_count"] = len(ids)
        elif key.endswith("labels"):
            decoded[key] = tokenizer.decode([i for i in ids if i != -100], skip_special_tokens=False)
    return decoded


if __name__ == "__main__":
    main(sys.argv[1])
