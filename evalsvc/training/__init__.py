"""Training with the judge: fit its score heads, and turn scored runs into training data.

    heads:  store.item_streams.labeled_items ─▶ features_cache (frozen Engine) ─▶ heads_fit ─▶ heads
    data:   store.item_streams.stream_items ─▶ texts (meta / side file) ─▶ codec (tokens) ─▶ interleave ─▶ formats

Modules: `interleave` (pure functions on token-id lists: ReEmpathy, CoTBS, plain SFT, GLM-4-Voice
13:26 streams), `codec` (tokenizer and speech tokens <-> ids, chunks back to text), `texts`
(transcripts and speech tokens of an item), `datasets`
(interleaved and judge SFT builders), `pairs` (DPO pairs), `formats` (LLaMA-Factory and TRL rows,
dataset_info.json), `features_cache`, `heads_fit` and `heads_job` (head fitting end to end),
`finetune` (adapter training). The rows come from SQL through `evalsvc.store.item_streams`.
Nothing here imports torch except the head-fitting modules.
"""
