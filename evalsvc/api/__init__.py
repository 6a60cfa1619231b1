"""The HTTP service: `POST /v1/score` on LitServe, in front of the model tier.

Processes (LitServe 0.2.19):

    evalsvc serve (main) ── creates the shared state (metrics, in-flight counter, model info slot)
      ├── model workers (spawned, one per device x workers_per_device): `ScoringAPI.setup` loads the
      │   engine; `predict` scores dynamic batches of pairs that were already validated
      └── API servers (forked): auth, limits, request parsing, audio decoding, cache lookup, metrics

Everything a user sends is parsed and decoded in the API servers, so a bad request is answered
there and never occupies a slot of a model batch. LitServe runs `decode_request` in the model worker
and fails a whole batch when one item raises, so validating there would let one corrupt file fail its
neighbours; here `predict` only ever sees decodable pairs and still returns per-item errors.

Modules: `inputs` (parse and decode a request), `score_handoff` (cache lookup, hand-off, reads,
readiness), `model_tier` (queue a pair for the workers and await it), `litapi` and `batch_scorer`
(the model tier's hooks and batch scoring), `auth`, `limits`, `metrics`, `shared` (state shared by
all processes), `responses` (errors as JSON), the routes (`score_routes`, `run_routes`,
`report_routes`: each `add_*_routes(app, ...)`), `server`. Request and response models are
`evalsvc.protocol` (the client reads the same ones).
"""
