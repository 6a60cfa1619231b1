"""The SQL store: every score with its provenance, bulk runs, human labels, tenants.

Open it with `Store.from_settings(settings)` (or `Store(url)`), then call the repository functions
with a session; callers never write SQL:

    store = Store.from_settings(settings)
    with store.session() as session:
        hits = find_results(session, keys)

Modules: `connection` (URLs, engines, SQLite pragmas), `handle` (the `Store`: sessions),
`models` (the schema), `migrate` (Alembic; its environment and revisions are the package data in
`migrations/`),
`upsert` (batched ON CONFLICT for both backends), `pgcopy` (PostgreSQL COPY for bulk inserts),
`scratch` (a scratch PostgreSQL database for tests and benchmarks), and one repository module per
area: `results`, `runs`, `run_records` (item outcomes, run groups), `item_leases` (item claims),
`item_streams` (items with their results for training), `scope` (which runs a tenant sees),
`report_queries` (the reports' aggregates), `labels`, `tenants`, `judging` (the LLM judges'
transcripts, labels, verdicts and ledger).
"""

from evalsvc.store.handle import Store
from evalsvc.store.labels import HumanLabelSpec, create_label_set, upsert_labels
from evalsvc.store.models import (
    ApiKey,
    HumanLabel,
    ItemStatus,
    LabelSet,
    ModelVersion,
    Result,
    Run,
    RunItem,
    RunStatus,
    Tenant,
    TenantResult,
)
from evalsvc.store.results import (
    Fingerprint,
    Grant,
    ResultRecord,
    content_key,
    ensure_model_version,
    find_results,
    get_result,
    grant_results,
    result_ids,
    store_results,
    tenant_result_numbers,
)
from evalsvc.store.runs import (
    ItemOutcome,
    RunItemSpec,
    add_run_items,
    create_run,
    record_outcomes,
    refresh_run_counts,
)
from evalsvc.store.tenants import create_tenant, issue_api_key, revoke_api_key, tenant_for_api_key

__all__ = [
    "ApiKey",
    "Fingerprint",
    "Grant",
    "HumanLabel",
    "HumanLabelSpec",
    "ItemOutcome",
    "ItemStatus",
    "LabelSet",
    "ModelVersion",
    "Result",
    "ResultRecord",
    "Run",
    "RunItem",
    "RunItemSpec",
    "RunStatus",
    "Store",
    "Tenant",
    "TenantResult",
    "add_run_items",
    "content_key",
    "create_label_set",
    "create_run",
    "create_tenant",
    "ensure_model_version",
    "find_results",
    "get_result",
    "grant_results",
    "issue_api_key",
    "record_outcomes",
    "refresh_run_counts",
    "result_ids",
    "revoke_api_key",
    "store_results",
    "tenant_for_api_key",
    "tenant_result_numbers",
    "upsert_labels",
]
