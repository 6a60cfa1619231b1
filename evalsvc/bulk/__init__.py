"""Bulk runs: whole datasets from a manifest, every item scored exactly once, whatever crashes.

    manifest.jsonl/.csv ──▶ manifest (check every row) ──▶ service.record_run (SQL: run + items)
                                                              │
                        ┌─────────────────────────────────────┴─────────────────────┐
                        ▼ evalsvc bulk submit / POST /v1/runs                       ▼ evalsvc bulk run
          queue.ShardQueue: one RQ job per shard                      service.run_in_process
                        ▼ evalsvc worker (workers/)                                 │
                        └──────────▶ processing.process_shard ◀─────────────────────┘
                                     pending items ▶ ItemScorer (scorers) ▶ outcomes in SQL

Modules: `manifest` (parse, validate), `shards` (cutting a run into jobs, deterministic ids),
`records` (the run's SQL reads and status changes), `scorers` (engine in process or HTTP model
tier), `llm_items` (the scorer of runs judged by an LLM judge, `runs.judge`), `processing` (the
shard function), `queue` (RQ transport), `service` (the operations the CLI and HTTP call; one run
per judge, linked as a group), `estimates` (`--dry-run`), `progress` (the bar), `results` (rows as
JSON lines or CSV).
"""
