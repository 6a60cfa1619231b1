"""EmpathyEval inference: Qwen3-Omni thinker (+ LoRA) with NS/WA/EU/ES heads.

Nothing is imported here on purpose: `evalsvc.engine.types` must stay importable without loading
torch and transformers (the store, the HTTP front end and the CLI's cache path use it). The engine
itself is `evalsvc.engine.engine.Engine`.
"""
