"""Bulk runs: whole datasets from a manifest, every item scored exactly once, whatever crashes.

    manifest.jsonl/.csv ──▶ manifest (check every row) ──▶ run_operations.submit_runs (SQL: run + items)
                                                              │
                        ┌─────────────────────────────────────┴─────────────────────┐
                        ▼ evalsvc bulk submit / POST /v1/runs                       ▼ evalsvc bulk run
          queue.ShardQueue: one RQ job per shard                 run_operations.run_in_process
                        ▼ evalsvc worker (rq_worker, jobs)                          │
                        └──────────▶ processing.process_shard ◀─────────────────────┘
                                     pending items ▶ ItemScorer (scorers) ▶ outcomes in SQL

Modules: `manifest` (parse, validate), `shards` (cutting a run into jobs, deterministic ids),
`scorers` (engine in process or HTTP model tier), `llm_items` (the scorer of runs judged by an LLM
judge, `runs.judge`), `processing` (the shard function), `queue` (RQ transport), `run_operations`
(submit, cancel, resume, state: what the CLI and HTTP call; one run per judge, linked as a group),
`estimates` (`--dry-run`), `rq_worker` (the RQ worker), `jobs` (its job function), `worker_health`
(its container healthcheck), `progress` (the bar), `results` (rows as JSON lines or CSV). The runs'
SQL is in `evalsvc.store` (`runs`, `run_records`, `item_leases`, `scope`).
"""
