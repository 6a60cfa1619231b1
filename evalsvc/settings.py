"""The one configuration object of the service.

Every knob is read here, once, from `EVALSVC_*` environment variables (or a `.env` file), and the
resulting `Settings` is passed down explicitly. Nothing else in the code base reads `os.environ`, so
a test or a CLI flag can override any value by constructing `Settings(...)` with keyword arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TINY_MODEL = "tiny"
DEFAULT_MODEL = "Qwen/Qwen3-Omni-30B-A3B-Captioner"

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
Mode = Literal["scores", "assessment", "both"]


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "evalsvc"


class Settings(BaseSettings):
    """Service configuration; see README "Configuration" for the user-facing table."""

    model_config = SettingsConfigDict(env_prefix="EVALSVC_", env_file=".env", extra="ignore")

    # --- model -------------------------------------------------------------------------------
    model: str = Field(
        DEFAULT_MODEL,
        description="Hub id or local directory of the Qwen3-Omni checkpoint; 'tiny' selects the built-in "
        "random tiny model (built under data_dir on first use).",
    )
    model_revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    adapter: Path | None = Field(None, description="Directory of a peft LoRA adapter.")
    merge_adapter: bool = Field(False, description="Merge the LoRA weights into the base model at load.")
    heads: Path | None = Field(None, description="Directory of fitted NS/WA/EU/ES regression heads.")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', ...")
    dtype: Dtype = Field("auto", description="'auto' is bfloat16 on CUDA, float32 on CPU.")
    tiny_seed: int = Field(0, description="Seed of the built-in tiny model.")

    # --- decoding ----------------------------------------------------------------------------
    max_new_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=5.0, description="0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, description="Seed for sampled decoding (temperature > 0).")

    # --- audio limits ------------------------------------------------------------------------
    audio_min_seconds: float = Field(0.1, ge=0.0)
    audio_max_seconds: float = Field(30.0, gt=0.0)
    audio_max_bytes: int = Field(25 * 1024 * 1024, gt=0, description="Largest encoded audio file accepted.")

    # --- storage -----------------------------------------------------------------------------
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default is a SQLite file in data_dir."
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value in {"auto", "cpu", "mps"} or value == "cuda" or value.startswith("cuda:"):
            return value
        raise ValueError(f"unknown device {value!r}; use auto, cpu, cuda or cuda:N")

    @model_validator(mode="after")
    def _limits_are_ordered(self) -> Settings:
        if self.audio_min_seconds >= self.audio_max_seconds:
            raise ValueError("audio_min_seconds must be smaller than audio_max_seconds")
        return self

    @property
    def uses_tiny_model(self) -> bool:
        return self.model == TINY_MODEL

    @property
    def tiny_model_dir(self) -> Path:
        return self.data_dir / f"tiny-model-seed{self.tiny_seed}"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'evalsvc.sqlite3'}"
