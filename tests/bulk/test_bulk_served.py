"""A bulk run whose text comes from a generation server: an outage stops it with nothing lost, and the
run resumes where it stopped once the server is back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from evalsvc.audio import AudioLimits
from evalsvc.bulk.manifest import read_manifest
from evalsvc.bulk.processing import ShardContext
from evalsvc.bulk.run_operations import record_runs, run_in_process
from evalsvc.bulk.scorers import LocalItemScorer
from evalsvc.engine.served import ServedJudge
from evalsvc.errors import LLMServerError
from evalsvc.scoring import ResultCache
from evalsvc.settings import Settings
from evalsvc.store import ModelVersion, Result, Store
from evalsvc.store.run_records import RunProgress
from tests.bulk.conftest import SMALL, item_states
from tests.judges.openai_server import Failure, Reply, ScriptedOpenAI, serving

pytestmark = pytest.mark.integration
SERVED = "empathyeval-merged"


def test_a_served_run_survives_an_outage_and_resumes(
    store: Store, bulk_settings: Settings, merged_settings: Settings, small_manifest: Path
) -> None:
    outage = {"down": True}

    def script(_body: dict[str, Any], _n: int) -> Reply | Failure:
        return (
            Failure(503, "overloaded")
            if outage["down"]
            else Reply("Kind and clear.\nSCORES: NS=4 WA=4 EU=3 ES=5")
        )

    server = ScriptedOpenAI(script, models=(SERVED,))
    with serving(server) as url:
        settings = bulk_settings.model_copy(
            update={
                "model": merged_settings.model,
                "adapter": None,
                "heads": None,
                "generation_url": url,
                "generation_model": SERVED,
                "generation_max_retries": 0,
            }
        )
        judge = ServedJudge(settings)
        local = LocalItemScorer(
            judge, ResultCache(store), AudioLimits.from_settings(settings), settings.data_roots
        )
        context = ShardContext(
            store, local, settings.bulk_batch_size, batch_retries=1, backoff_s=0.0, sleep=lambda _s: None
        )
        items = read_manifest(small_manifest, [small_manifest.parent]).accepted(skip_invalid=False)
        [run_id] = record_runs(store, name="served", mode="scores", items=items)

        with pytest.raises(LLMServerError) as stopped:  # the batch was retried, then the run stops
            run_in_process(store, context, run_id, settings.bulk_shard_size, _ignore)
        assert stopped.value.code == "llm_server_error"
        assert item_states(store, run_id) == {"pending": SMALL}  # nothing failed, nothing lost
        assert len(server.requests) == 2 * settings.bulk_batch_size  # first batch, tried twice

        outage["down"] = False
        run_in_process(store, context, run_id, settings.bulk_shard_size, _ignore)  # what `bulk resume` runs
        judge.close()
    assert item_states(store, run_id) == {"done": SMALL}
    with store.session() as session:
        rows = session.scalars(select(Result)).all()
        decoding = session.scalars(select(ModelVersion.decoding)).one()
    assert len(rows) == SMALL and {(row.ns, row.wa, row.eu, row.es) for row in rows} == {(4.0, 4.0, 3.0, 5.0)}
    assert decoding["backend"]["served_model"] == SERVED


def _ignore(_progress: RunProgress) -> None:
    return None
