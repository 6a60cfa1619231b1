"""RQ workers of bulk runs: `python -m workers` (the same as `evalsvc worker`).

    workers.jobs     the job function (`score_shard`) and the per-process state it uses
    workers.worker   `ShardWorker`, an RQ `SimpleWorker` that heartbeats once per batch, and `run_worker`

Why a `SimpleWorker`: the model must be loaded once per worker process and kept across jobs. RQ's
forking `Worker` runs each job in a fresh fork: a model loaded in the fork dies with it (a reload per
job), and one loaded in the parent before forking cannot be used on the GPU (CUDA does not survive
`fork`). `SpawnWorker` starts a new interpreter per job. `SimpleWorker` runs jobs in the worker
process itself, so the engine loaded at start serves every job. What it lacks is the heartbeat a
forking worker sends while it waits for its child; here the shard function sends one after every
batch instead, with a short TTL, so a worker killed mid-shard has its job put back within
`bulk_heartbeat_ttl_s` + `bulk_maintenance_interval_s` rather than after the whole job timeout.

With `EVALSVC_MODEL_URL` the worker holds no model at all: it sends pairs to `evalsvc serve` (the
GPU stays in the LitServe tier) and the same worker class serves, as light as an HTTP client.
"""
