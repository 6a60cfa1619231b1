"""What every sub-command shares: settings overrides from flags, and mapping errors to exit codes.

Exit codes: 0 success; 2 the user's input or flags must be fixed (bad audio, bad parameter);
3 the service's setup is wrong (model, adapter or heads cannot be loaded) or the database is
unavailable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from evalsvc.errors import ConfigurationError, EvalsvcError, UserInputError
from evalsvc.settings import PROFILES, Settings
from evalsvc.store import Store
from evalsvc.store.scope import tenant_id_by_name
from evalsvc.store.tenants import LOCAL_TENANT, ensure_tenant

EXIT_OK = 0
EXIT_USER_ERROR = 2
EXIT_CONFIG_ERROR = 3

Handler = Callable[[argparse.Namespace, Settings], int]

# Flag name -> Settings field; flags default to None so that only what was given overrides the env.
MODEL_FLAGS: dict[str, str] = {
    "model": "model",
    "model_revision": "model_revision",
    "profile": "model_profile",
    "adapter": "adapter",
    "merge_adapter": "merge_adapter",
    "heads": "heads",
    "device": "device",
    "dtype": "dtype",
    "max_gpu_memory": "max_gpu_memory",
    "attn_implementation": "attn_implementation",
    "max_new_tokens": "max_new_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "data_dir": "data_dir",
}
STORE_FLAGS: dict[str, str] = {"database_url": "database_url", "data_dir": "data_dir"}


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (override EVALSVC_* settings)")
    group.add_argument(
        "--model", help="hub id, local checkpoint directory, or 'tiny' (built-in random model)"
    )
    group.add_argument("--model-revision", help="hub revision (branch, tag or commit)")
    group.add_argument(
        "--profile",
        choices=PROFILES,
        help="which judge the model is (default auto: told by its name): "
        "empathyeval = Qwen3-Omni-30B-A3B-Captioner + the EmpathyEval adapter (+ heads), or that adapter "
        "merged in; zero-shot = Qwen3-Omni-30B-A3B-Instruct, the paper's zero-shot baseline; "
        "zero-shot-thinking = Qwen3-Omni-30B-A3B-Thinking, its reasoning removed from the assessment; "
        "tiny = the built-in random model. The Captioner without the adapter is refused: it ignores "
        "the judge prompt",
    )
    group.add_argument(
        "--adapter", help="LoRA adapter directory (peft; transformers 4.x layouts are converted)"
    )
    group.add_argument("--heads", help="regression heads directory")
    group.add_argument(
        "--merge-adapter",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="merge LoRA weights into the model at load (default: on; unmerged is far slower on MoE experts)",
    )
    group.add_argument(
        "--device", help="auto, cpu, cuda, cuda:N, or cuda:N,M,... to spread one model over GPUs"
    )
    group.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    group.add_argument(
        "--max-gpu-memory", help="weights budget per GPU, e.g. 40GiB (default: 85%% of each GPU)"
    )
    group.add_argument(
        "--attn-implementation",
        choices=["auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3"],
        help="auto (default): flash_attention_2 on CUDA when flash-attn is installed, else sdpa",
    )
    group.add_argument(
        "--max-new-tokens", type=int, help="generation limit (default: 1024, Thinking 4096, tiny 256)"
    )
    group.add_argument("--temperature", type=float, help="0 (default) is greedy; > 0 samples")
    group.add_argument("--top-p", type=float)
    group.add_argument("--seed", type=int, help="seed for sampled decoding")
    group.add_argument("--data-dir", help="where the tiny model and the default database live")


def add_store_options(parser: argparse.ArgumentParser, *, data_dir: bool = False) -> None:
    """`--database-url` (and `--data-dir` for commands without the model options, which have it)."""
    group = parser.add_argument_group("store (override EVALSVC_* settings)")
    group.add_argument(
        "--database-url",
        help="sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB "
        "(default: a SQLite file in the data directory)",
    )
    if data_dir:
        group.add_argument("--data-dir", help="where the default SQLite database lives")


def add_tenant_option(parser: argparse.ArgumentParser, what: str) -> None:
    """`--tenant NAME`: whose data this command writes; by default the tenant `local`, which is also
    who `evalsvc serve --no-auth` acts as, so the local CLI and a local server share their runs."""
    parser.add_argument(
        "--tenant",
        default=LOCAL_TENANT,
        help=f"the tenant {what} belongs to (default: %(default)s, the tenant of `serve --no-auth`; "
        "another name must exist, e.g. made by `evalsvc keys create --tenant NAME`)",
    )


def tenant_id_for(store: Store, name: str) -> int:
    """The id of the CLI's tenant: `local` is created on first use, like the no-auth server does;
    any other tenant must exist (a typo must not create a tenant nobody's key can see)."""
    if name == LOCAL_TENANT:
        return ensure_tenant(store, name).id
    with store.session() as session:
        tenant_id = tenant_id_by_name(session, name)
    assert tenant_id is not None
    return tenant_id


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        field: getattr(args, flag)
        for flag, field in (MODEL_FLAGS | STORE_FLAGS).items()
        if getattr(args, flag, None) is not None
    }
    return Settings(**overrides)


def run_command(args: argparse.Namespace) -> int:
    """Run the chosen sub-command, turning every expected error into a message and an exit code."""
    handler: Handler = args.handler
    try:
        settings = settings_from_args(args)
    except ValidationError as error:
        return fail("invalid_parameter", _validation_message(error), EXIT_USER_ERROR)
    try:
        return handler(args, settings)
    except UserInputError as error:
        return fail(error.code, error.message, EXIT_USER_ERROR)
    except ConfigurationError as error:
        return fail(error.code, error.message, EXIT_CONFIG_ERROR)
    except EvalsvcError as error:
        return fail(error.code, error.message, EXIT_CONFIG_ERROR)


def fail(code: str, message: str, exit_code: int) -> int:
    print(f"error [{code}]: {message}", file=sys.stderr)
    return exit_code


def print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, ensure_ascii=False))


def _validation_message(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'settings'}: {item['msg']}"
        for item in error.errors()
    )
