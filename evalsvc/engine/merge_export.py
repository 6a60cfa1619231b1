"""`evalsvc export merged`: the base checkpoint with the EmpathyEval LoRA merged into its weights.

vLLM serves Qwen3-Omni's thinker but applies no LoRA to it (issues #31205, #51347), so a generation
server needs the adapter merged in. The export is loaded and merged by the same code that scores
(`load_thinker`, the strict `apply_adapter`), in the checkpoint's own dtype unless `--dtype` says
otherwise (merging in bfloat16 is what in-process loading does on a GPU), and written whole, vision
tower included, in the hub layout (`evalsvc.engine.hub_writer`) with the base's tokenizer, processor
and chat-template files, an `evalsvc.json` naming its profile, and the manifest
(`evalsvc.engine.merge_manifest`) that makes evalsvc identify it as the judge it came from.

Written in a temporary sibling directory and renamed into place: an interrupted export leaves no
half-written checkpoint that a server would load.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig
from transformers.utils import logging as transformers_logging

from evalsvc import __version__
from evalsvc.engine.adapter import apply_adapter
from evalsvc.engine.artifacts import fingerprint_of, resolve_artifacts
from evalsvc.engine.fingerprint import resolve_checkpoint
from evalsvc.engine.hashing import checkpoint_weights_sha256
from evalsvc.engine.hub_writer import INDEX_FILE, full_model_config, hub_tensors, save_sharded
from evalsvc.engine.loader import FULL_MODEL_TYPE, load_thinker, resolve_dtype
from evalsvc.engine.merge_manifest import MANIFEST_FILE, MergeManifest
from evalsvc.engine.placement import parse_placement
from evalsvc.engine.profiles import PROFILE_FILE
from evalsvc.errors import InvalidParameter, ModelLoadError
from evalsvc.settings import Settings

DEFAULT_MAX_SHARD_BYTES = 5 * 10**9
# Files of the base checkpoint that the export writes itself (or must not carry over).
_REWRITTEN = {"config.json", INDEX_FILE, PROFILE_FILE, MANIFEST_FILE, "BUILD_COMPLETE"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def export_merged(
    settings: Settings, out: Path, *, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
) -> MergeManifest:
    """Merge the configured adapter into the configured base model and write the checkpoint to `out`."""
    transformers_logging.disable_progress_bar()
    _require_empty(out)
    adapter = settings.adapter
    if adapter is None:
        raise InvalidParameter("give the LoRA adapter to merge: --adapter DIR (EVALSVC_ADAPTER)")
    artifacts = resolve_artifacts(settings.model_copy(update={"heads": None}))  # builds `tiny` if needed
    if not adapter.is_dir():
        raise InvalidParameter(f"adapter directory {adapter} does not exist")
    if not (adapter / "adapter_config.json").is_file():
        raise InvalidParameter(f"{adapter} is not a LoRA adapter directory: it has no adapter_config.json")
    base = fingerprint_of(artifacts, settings)
    placement = parse_placement(settings.device, torch.cuda.is_available())
    dtype = (
        _checkpoint_dtype(artifacts.model, artifacts.revision)
        if settings.dtype == "auto"
        else resolve_dtype(settings.dtype, placement)
    )
    try:
        thinker = load_thinker(
            artifacts.model,
            artifacts.revision,
            placement,
            dtype,
            attn_implementation="sdpa",
            max_gpu_memory=settings.max_gpu_memory,
            keep_vision_tower=True,
        )
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load model {artifacts.model!r}: {error}") from error
    merged = apply_adapter(thinker, adapter, merge=True)
    source = _local_files(artifacts.model, artifacts.revision)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for path in sorted(source.iterdir()):
            if _carried_over(path):
                shutil.copy2(path, staging / path.name)
        merged.config.dtype = dtype
        full_model_config(merged.config, enable_audio_output=False).save_pretrained(staging)
        save_sharded(hub_tensors(merged.state_dict()), staging, max_shard_bytes)
        (staging / PROFILE_FILE).write_text(json.dumps({"profile": artifacts.profile.name}) + "\n")
        manifest = MergeManifest(
            base_model_id=base.model_id,
            base_revision=base.model_revision,
            base_weights_sha256=base.weights_sha256,
            adapter_sha256=base.adapter_sha256 or "",
            prompt_version=base.prompt_version,
            profile=artifacts.profile.name,
            merged_weights_sha256=checkpoint_weights_sha256(staging),
            dtype=str(dtype).removeprefix("torch."),
            evalsvc_version=__version__,
        )
        (staging / MANIFEST_FILE).write_text(manifest.to_json())
        if out.exists():
            out.rmdir()  # empty, checked above; the rename below takes its place
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return manifest


def _require_empty(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidParameter(f"--out {out} exists and is not an empty directory; choose a new one")


def _checkpoint_dtype(model: str, revision: str | None) -> torch.dtype:
    """The dtype the checkpoint's weights are stored in (bfloat16 for the published ones)."""
    config = AutoConfig.from_pretrained(model, revision=revision)
    if config.model_type == FULL_MODEL_TYPE:
        config = config.thinker_config
    stored = getattr(config, "dtype", None) or torch.float32
    return getattr(torch, stored) if isinstance(stored, str) else stored


def _local_files(model: str, revision: str | None) -> Path:
    """The base checkpoint's directory; for a hub id its snapshot in the local cache, with the small
    files (tokenizer, processor, chat template) that loading the weights alone does not fetch."""
    if not Path(model).expanduser().is_dir():
        from huggingface_hub import snapshot_download

        snapshot_download(model, revision=revision, ignore_patterns=["*.safetensors", "*.bin", "*.pt"])
    _, _, local = resolve_checkpoint(model, revision)
    if local is None:
        raise ModelLoadError(f"cannot find the files of {model!r} in the local hub cache after loading it")
    return local


def _carried_over(path: Path) -> bool:
    """Tokenizer, processor, chat template and generation config files: everything but the weights
    and what the export writes itself."""
    return (
        path.is_file()
        and not path.name.startswith(".")
        and path.name not in _REWRITTEN
        and not path.name.endswith(_WEIGHT_SUFFIXES)
    )
