"""The one configuration object of the service.

Every knob is read here, once, from `EVALSVC_*` environment variables (or a `.env` file), and the
resulting `Settings` is passed down explicitly. Nothing else in the code base reads `os.environ`, so
a test or a CLI flag can override any value by constructing `Settings(...)` with keyword arguments.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TINY_MODEL = "tiny"
DEFAULT_MODEL = "Qwen/Qwen3-Omni-30B-A3B-Captioner"
DEFAULT_ASR_MODEL = "openai/whisper-large-v3"
DEFAULT_EMOTION_MODEL = "emotion2vec/emotion2vec_plus_large"

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
AttnImplementation = Literal["auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3"]
# See evalsvc.engine.profiles for what each one is and how `auto` detects it.
PROFILES = ("auto", "empathyeval", "zero-shot", "zero-shot-thinking", "tiny")
Profile = Literal["auto", "empathyeval", "zero-shot", "zero-shot-thinking", "tiny"]
Mode = Literal["scores", "assessment", "both"]
EmotionBackend = Literal["auto", "funasr", "transformers"]
StructuredOutput = Literal["auto", "json_schema", "json_object", "off"]
PromptLanguage = Literal["en", "zh"]
SERVE_HOSTS = ("127.0.0.1", "0.0.0.0", "::")
LOOPBACK_HOSTS = ("127.0.0.1",)


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
    model_profile: Profile = Field(
        "auto",
        description="Which judge the checkpoint is: empathyeval (Captioner + EmpathyEval adapter, or merged), "
        "zero-shot (Instruct), zero-shot-thinking (Thinking), tiny; 'auto' tells them by name.",
    )
    adapter: Path | None = Field(None, description="Directory of a peft LoRA adapter.")
    merge_adapter: bool = Field(
        True,
        description="Merge the LoRA weights into the base model at load (unmerged LoRA on the fused MoE "
        "experts rebuilds every expert's weights on every forward: tens of times slower).",
    )
    heads: Path | None = Field(None, description="Directory of fitted NS/WA/EU/ES regression heads.")
    device: str = Field(
        "auto",
        description="'auto' (CUDA when present), 'cpu', 'cuda' (GPU 0), 'cuda:1', or a set of GPUs one model "
        "is spread over, 'cuda:0,1'.",
    )
    dtype: Dtype = Field("auto", description="'auto' is bfloat16 on CUDA, float32 on CPU.")
    max_gpu_memory: str | None = Field(
        None,
        pattern=r"^\d+(\.\d+)?\s*(GiB|GB|MiB|MB)$",
        description="Weights budget per GPU when one model spans several (e.g. '40GiB'); default: 85% of "
        "each GPU's memory, the rest left for activations and the KV cache.",
    )
    attn_implementation: AttnImplementation = Field(
        "auto", description="'auto' is flash_attention_2 on CUDA when flash-attn is installed, else sdpa."
    )
    tiny_seed: int = Field(0, description="Seed of the built-in tiny model.")

    # --- decoding ----------------------------------------------------------------------------
    max_new_tokens: int | None = Field(
        None,
        ge=1,
        le=16384,
        description="Generation limit; default per profile (1024, Thinking 4096, tiny 256).",
    )
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
    features_dir: Path | None = Field(
        None,
        description="Cache of pooled backbone features for head fitting (evalsvc train heads); "
        "default data_dir/features.",
    )

    # --- HTTP serving (evalsvc serve) -------------------------------------------------------
    host: str = Field(
        "127.0.0.1",
        description="Interface to bind: 127.0.0.1 (this machine), 0.0.0.0 or :: (every interface).",
    )
    port: int = Field(8000, ge=1024, le=65535)
    workers_per_device: int = Field(
        1, ge=1, description="Model worker processes per GPU set (gpus_per_replica GPUs), or for the CPU."
    )
    gpus_per_replica: int = Field(
        1, ge=1, le=64, description="GPUs one model worker spreads its model over (evalsvc serve)."
    )
    api_servers: int | None = Field(
        None, ge=1, description="HTTP front-end processes; default one per model worker."
    )
    max_batch_size: int = Field(8, ge=1, le=256, description="Largest dynamic batch; 1 turns batching off.")
    batch_timeout_s: float = Field(
        0.01, ge=0.0, le=10.0, description="How long a model worker waits for a batch to fill."
    )
    max_in_flight: int = Field(
        64, ge=1, description="Scoring requests being served at once (all front ends); beyond it: 429."
    )
    max_in_flight_per_tenant: int | None = Field(
        None,
        ge=1,
        description="Scoring requests one tenant may have served at once (all front ends); beyond it: "
        "429. Default: max_in_flight (no share of its own).",
    )
    header_timeout_s: float = Field(
        20.0,
        gt=0.0,
        description="Time a client has to send a request's line and headers, from connecting (or from "
        "the request's first byte on a kept-alive connection); beyond it: 408 and the connection closes.",
    )
    body_timeout_s: float = Field(
        20.0,
        gt=0.0,
        description="Time a client has to send a request's body, extended by a second per "
        "body_min_bytes_per_s bytes received; beyond it: 408 and the connection closes.",
    )
    body_min_bytes_per_s: int = Field(
        500, ge=1, description="The upload rate that keeps extending body_timeout_s (bytes per second)."
    )
    max_payload_bytes: int = Field(
        72 * 1024 * 1024,
        gt=0,
        description="Largest request body in bytes (413 beyond it); the default fits two 25 MiB files "
        "base64-encoded in JSON.",
    )
    request_timeout_s: float = Field(
        120.0, gt=0.0, description="Time limit of one scoring request, queueing included (504 beyond it)."
    )
    auth_enabled: bool = Field(
        True, description="Require an API key; may be turned off only when bound to a loopback host."
    )
    data_roots: list[Path] = Field(
        default_factory=list,
        description="Directories whose files /v1/score may read by server-side `path`; empty (the "
        "default) turns `path` inputs off.",
    )
    api_key: str | None = Field(
        None, description="The key `evalsvc score --server` sends: a client setting, not the server's."
    )

    # --- bulk runs (evalsvc bulk, evalsvc worker) ----------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis of the bulk queue (transport only: SQL is the record)."
    )
    bulk_queue: str = Field(
        "evalsvc-bulk", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="RQ queue of the shard jobs."
    )
    bulk_shard_size: int = Field(100, ge=1, le=100_000, description="Manifest items per shard job.")
    bulk_batch_size: int = Field(8, ge=1, le=256, description="Pairs per model call inside a shard.")
    bulk_job_timeout_s: int = Field(
        3600, ge=10, description="Time limit of one shard job; beyond it the job fails and is retried."
    )
    bulk_job_retries: int = Field(
        3, ge=0, le=100, description="Re-runs of a shard job that failed, timed out or whose worker died."
    )
    bulk_job_retry_intervals_s: list[int] = Field(
        default_factory=lambda: [30, 120, 600],
        description="Wait before each job re-run (the last repeats); workers run RQ's scheduler for it.",
    )
    bulk_batch_retries: int = Field(
        3, ge=0, le=20, description="In-shard retries of a batch hit by a transient failure (busy, db down)."
    )
    bulk_backoff_s: float = Field(
        1.0, ge=0.0, le=60.0, description="First in-shard retry delay; it doubles on every retry."
    )
    bulk_heartbeat_ttl_s: int = Field(
        300,
        ge=1,
        description="A shard job unheard of for this long (one heartbeat per batch) counts as abandoned: "
        "its worker died, and the job is retried. Must exceed the slowest batch plus its retries.",
    )
    bulk_maintenance_interval_s: int = Field(
        60, ge=1, description="How often workers look for abandoned jobs (RQ registry cleaning)."
    )
    bulk_job_max_worker_deaths: int = Field(
        5,
        ge=1,
        description="A shard job whose worker died this many times is failed instead of put back "
        "(a pair that crashes the process must not take every worker down); deaths are not retries.",
    )
    model_url: str | None = Field(
        None,
        description="Base URL of an `evalsvc serve` model tier; bulk workers then score through it "
        "(EvalClient, presenting `api_key`) instead of loading the model themselves. It must share "
        "this database.",
    )

    # --- LLM judges: transcripts, emotion labels, an OpenAI-compatible LLM (evalsvc.judges) --------
    asr_model: str = Field(
        DEFAULT_ASR_MODEL,
        description="Whisper checkpoint for transcripts (hub id or local directory); 'tiny' builds a random "
        "tiny Whisper under data_dir (tests, demos).",
    )
    asr_revision: str | None = Field(None, description="Hub revision of the ASR checkpoint.")
    asr_language: str = Field(
        "auto",
        pattern=r"^(auto|[a-z]{2,3}|[a-z][a-z ]+)$",
        description="'auto' detects each clip's language; or a Whisper language code or name ('zh', 'en').",
    )
    asr_batch_size: int = Field(8, ge=1, le=256, description="Clips per Whisper generate call.")
    asr_num_beams: int = Field(1, ge=1, le=16, description="Beam width of Whisper decoding (1: greedy).")
    asr_max_new_tokens: int = Field(
        440, ge=1, le=444, description="Transcript token limit per clip (Whisper's window holds 448)."
    )
    emotion_model: str = Field(
        DEFAULT_EMOTION_MODEL,
        description="Emotion classifier: Emotion2Vec through FunASR (pip install 'evalsvc[emotion2vec]'), "
        "or any transformers audio-classification checkpoint; 'tiny' builds a random tiny one.",
    )
    emotion_revision: str | None = Field(None, description="Hub revision of the emotion classifier.")
    emotion_backend: EmotionBackend = Field(
        "auto", description="'auto': FunASR for emotion2vec checkpoints, transformers for the rest."
    )
    emotion_label_map: dict[str, str] = Field(
        default_factory=dict,
        description="Extra classifier label names mapped onto the seven emotions (JSON object), for "
        "checkpoints whose labels the built-in table does not know; a label mapped to '' is dropped.",
    )
    emotion_batch_size: int = Field(8, ge=1, le=256, description="Clips per emotion classifier call.")
    llm_base_url: str = Field(
        "https://api.openai.com/v1",
        pattern=r"^https?://",
        description="Base URL of the OpenAI-compatible chat completions API (a vLLM server: "
        "http://host:8000/v1).",
    )
    llm_model: str = Field("gpt-4o", min_length=1, description="Model name sent to the LLM API.")
    llm_api_key: SecretStr | None = Field(
        None, description="Key of the LLM API; unset for a server that needs none (a local vLLM)."
    )
    llm_concurrency: int = Field(8, ge=1, le=256, description="LLM calls in flight at once.")
    llm_max_retries: int = Field(
        4,
        ge=0,
        le=20,
        description="Retries of an LLM call after a 429, 5xx, 408/409 or timeout, with exponential backoff "
        "(0.5 s doubling to 8 s, or the server's Retry-After).",
    )
    llm_timeout_s: float = Field(60.0, gt=0.0, le=3600.0, description="Time limit of one LLM call attempt.")
    llm_temperature: float = Field(0.0, ge=0.0, le=2.0, description="LLM sampling temperature (0: greedy).")
    llm_seed: int | None = Field(0, description="Seed sent with every LLM call (servers that honour it).")
    llm_max_tokens: int = Field(1024, ge=16, le=65536, description="Reply token limit of one LLM call.")
    llm_structured_output: StructuredOutput = Field(
        "auto",
        description="'json_schema' (constrained decoding), 'json_object', 'off' (plain text, strict parse); "
        "'auto' starts with json_schema and steps down when the server rejects it.",
    )
    llm_prompt_language: PromptLanguage = Field("en", description="Language of the judge prompts: en or zh.")
    llm_price_input_per_1m: float | None = Field(
        None, ge=0.0, description="Price of 1M input tokens (USD); unset: costs are not computed."
    )
    llm_price_output_per_1m: float | None = Field(
        None, ge=0.0, description="Price of 1M output tokens (USD); unset: costs are not computed."
    )

    # --- generation server: assessment text from vLLM serving a merged checkpoint (engine.served) -
    generation_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Base URL of an OpenAI-compatible server (vLLM: http://host:8000/v1) that writes the "
        "assessment text; unset: generate in this process. Heads still run here.",
    )
    generation_model: str | None = Field(
        None,
        min_length=1,
        description="The model name the generation server serves (vllm --served-model-name).",
    )
    generation_api_key: SecretStr | None = Field(
        None, description="Key of the generation server (vllm --api-key); unset for none."
    )
    generation_concurrency: int = Field(
        32, ge=1, le=1024, description="Requests in flight to the generation server (it batches them)."
    )
    generation_max_retries: int = Field(
        4,
        ge=0,
        le=20,
        description="Retries of a generation request after a 429, 5xx or timeout, with backoff.",
    )
    generation_timeout_s: float = Field(
        600.0, gt=0.0, le=3600.0, description="Time limit of one generation request attempt."
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value in {"auto", "cpu", "mps", "cuda"} or re.fullmatch(r"cuda:\d+(,\d+)*", value):
            return value
        raise ValueError(f"unknown device {value!r}; use auto, cpu, cuda, cuda:N or cuda:N,M,...")

    @field_validator("bulk_job_retry_intervals_s")
    @classmethod
    def _intervals_not_negative(cls, value: list[int]) -> list[int]:
        if any(interval < 0 for interval in value):
            raise ValueError("retry intervals must be 0 or more seconds")
        return value

    @model_validator(mode="after")
    def _limits_are_ordered(self) -> Settings:
        if self.audio_min_seconds >= self.audio_max_seconds:
            raise ValueError("audio_min_seconds must be smaller than audio_max_seconds")
        return self

    @model_validator(mode="after")
    def _generation_model_named(self) -> Settings:
        if self.generation_url and not self.generation_model:
            raise ValueError("generation_url needs generation_model: the name the server serves the model as")
        return self

    @field_validator("host")
    @classmethod
    def _bindable_host(cls, value: str) -> str:
        # LitServe 0.2.19 binds only these three; say so at configuration time, not at start.
        if value not in SERVE_HOSTS:
            raise ValueError(f"host must be one of {', '.join(SERVE_HOSTS)}, not {value!r}")
        return value

    @model_validator(mode="after")
    def _auth_off_only_on_loopback(self) -> Settings:
        if not self.auth_enabled and self.host not in LOOPBACK_HOSTS:
            raise ValueError("auth may be turned off only when the server binds a loopback host (127.0.0.1)")
        return self

    @property
    def in_flight_per_tenant(self) -> int:
        return min(self.max_in_flight_per_tenant or self.max_in_flight, self.max_in_flight)

    @property
    def uses_tiny_model(self) -> bool:
        return self.model == TINY_MODEL

    @property
    def tiny_model_dir(self) -> Path:
        return self.data_dir / f"tiny-model-seed{self.tiny_seed}"

    @property
    def resolved_features_dir(self) -> Path:
        return self.features_dir or self.data_dir / "features"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'evalsvc.sqlite3'}"
