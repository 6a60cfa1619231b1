"""Emotion2Vec through FunASR for real, on a tiny random Emotion2vec built with FunASR's own model
class and loaded by `AutoModel` from a local directory laid out like the hub's (config.yaml,
model.pt, tokens.txt).

FunASR is the optional extra `evalsvc[emotion2vec]`, which the dev extra (so `make install` and CI)
includes; where it is missing these tests skip, saying so (the label mapping of its results is tested
in test_emotion_mapping.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsvc.audio import AudioLimits, decode_audio
from evalsvc.errors import ModelLoadError
from evalsvc.judges.emotion_models import FunasrEmotionLabeller, load_emotion_labeller
from evalsvc.judges.emotions import EMOTION2VEC_LABELS, EMOTIONS
from evalsvc.settings import Settings
from tests.judges.conftest import example_clip_paths

pytest.importorskip("funasr", reason="FunASR is the optional extra evalsvc[emotion2vec]")
torch = pytest.importorskip("torch")

# emotion2vec_plus_large's architecture (FunASR's emotion2vec template.yaml), shrunk: 1 block of width
# 32, a narrow convolutional feature encoder with the real strides.
_AUDIO = {
    "type": "AUDIO", "prenet_depth": 1, "prenet_layerdrop": 0.0, "prenet_dropout": 0.0,
    "start_drop_path_rate": 0.0, "end_drop_path_rate": 0.0, "num_extra_tokens": 2,
    "init_extra_token_zero": True, "mask_noise_std": 0.01, "mask_prob_min": None, "mask_prob": 0.5,
    "inverse_mask": False, "mask_prob_adjust": 0.05, "keep_masked_pct": 0.0, "mask_length": 5,
    "add_masks": False, "remove_masks": False, "mask_dropout": 0.0, "encoder_zero_mask": True,
    "mask_channel_prob": 0.0, "mask_channel_length": 64, "ema_local_encoder": False, "local_grad_mult": 1.0,
    "use_alibi_encoder": True, "alibi_scale": 1.0, "learned_alibi": False, "alibi_max_pos": None,
    "learned_alibi_scale": True, "learned_alibi_scale_per_head": True, "learned_alibi_scale_per_layer": False,
    "num_alibi_heads": 2, "model_depth": 1, "extractor_mode": "layer_norm",
    "decoder": {"decoder_dim": 16, "decoder_groups": 2, "decoder_kernel": 3, "decoder_layers": 1,
                "input_dropout": 0.0, "add_positions_masked": False, "add_positions_all": False,
                "decoder_residual": True, "projection_layers": 1, "projection_ratio": 2.0},
    "feature_encoder_spec": "[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] + [(16, 2, 2)]",
    "conv_pos_width": 5, "conv_pos_groups": 2, "conv_pos_depth": 1, "conv_pos_pre_ln": False,
}  # fmt: skip
_MODEL = {
    "loss_beta": 0.0, "loss_scale": None, "depth": 1, "start_drop_path_rate": 0.0, "end_drop_path_rate": 0.0,
    "num_heads": 2, "norm_eps": 1e-5, "norm_affine": True, "encoder_dropout": 0.0, "post_mlp_drop": 0.0,
    "attention_dropout": 0.0, "activation_dropout": 0.0, "dropout_input": 0.0, "layerdrop": 0.0,
    "embed_dim": 32, "mlp_ratio": 2.0, "layer_norm_first": False, "average_top_k_layers": 1,
    "end_of_block_targets": False, "clone_batch": 1, "layer_norm_target_layer": False,
    "batch_norm_target_layer": False, "instance_norm_target_layer": True, "instance_norm_targets": False,
    "layer_norm_targets": False, "ema_decay": 0.999, "ema_same_dtype": True, "log_norms": True,
    "ema_end_decay": 0.99999, "ema_anneal_end_step": 20000, "ema_encoder_only": False, "max_update": 100000,
    "extractor_mode": "layer_norm", "shared_decoder": None, "min_target_var": 0.1, "min_pred_var": 0.01,
    "supported_modality": "AUDIO", "mae_init": False, "seed": 1, "skip_ema": False, "cls_loss": 1.0,
    "recon_loss": 0.0, "d2v_loss": 1.0, "decoder_group": False, "adversarial_training": False,
    "adversarial_hidden_dim": 16, "adversarial_weight": 0.1, "cls_type": "chunk", "normalize": True,
    "modalities": {"audio": _AUDIO},
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_emotion2vec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from funasr.models.emotion2vec.model import Emotion2vec

    root = tmp_path_factory.mktemp("emotion2vec") / "tiny-emotion2vec"
    root.mkdir()
    config = {
        "model": "Emotion2vec",
        "model_conf": _MODEL,
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
    }
    (root / "config.yaml").write_text(json.dumps(config, ensure_ascii=False))  # JSON is YAML
    (root / "tokens.txt").write_text("\n".join(EMOTION2VEC_LABELS) + "\n")
    torch.manual_seed(0)
    model = Emotion2vec(model_conf=_MODEL, vocab_size=len(EMOTION2VEC_LABELS))
    torch.nn.init.normal_(model.proj.weight, std=1.0)
    torch.save(model.state_dict(), root / "model.pt")
    return root


def test_emotion2vec_loads_and_labels_through_funasr(tiny_emotion2vec: Path, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    settings = Settings(data_dir=tmp_path, emotion_model=str(tiny_emotion2vec), emotion_backend="funasr")
    labeller = load_emotion_labeller(settings)
    assert isinstance(labeller, FunasrEmotionLabeller)
    assert torch.get_num_threads() == threads  # FunASR would set 4 for the whole process
    clips = [decode_audio(path, AudioLimits()) for path in example_clip_paths()]
    labels = labeller.label(clips)
    assert [label.probabilities for label in labels] == [labeller.label([c])[0].probabilities for c in clips]
    for label in labels:
        assert label.label in EMOTIONS and label.raw_label in EMOTION2VEC_LABELS
        assert sum(label.probabilities.values()) == pytest.approx(1.0)
    provenance = labeller.provenance
    assert provenance.backend == "funasr" and provenance.model_id == "local:tiny-emotion2vec"
    assert provenance.weights_sha256 is not None and "funasr" in provenance.packages


def test_a_missing_emotion2vec_is_a_load_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, emotion_model=str(tmp_path / "none"), emotion_backend="funasr")
    with pytest.raises(ModelLoadError, match="cannot load the emotion model"):
        load_emotion_labeller(settings)
