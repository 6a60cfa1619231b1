"""LoRA fine-tuning of the judge (`evalsvc train adapter`): the paper's staged recipe on one GPU.

    datafile / sources   examples from JSON-lines or CSV files, or a judged run's assessments, checked whole
    tasks                ser, caption, assessment as token ids, through the engine's processor
    plan                 settings, stages, validation split, data order
    model                the thinker with a fresh LoRA of the served shape
    loop                 the training loop: accumulation, early stopping, checkpoints, Ctrl-C
    checkpoints          what `--resume` continues from
    job                  `train_adapter`: the entry point, and training.json

Public API: `train_adapter(settings, AdapterJob(...))`, `ExampleSource` (with `DataFileSource` and
`RunAssessmentSource`),
`TrainConfig`, `TrainingInterrupted`.
"""

from evalsvc.training.finetune.job import AdapterJob, train_adapter
from evalsvc.training.finetune.loop import TrainingInterrupted
from evalsvc.training.finetune.plan import TrainConfig
from evalsvc.training.finetune.sources import DataFileSource, ExampleSource, RunAssessmentSource, SourceRead

__all__ = [
    "AdapterJob",
    "DataFileSource",
    "ExampleSource",
    "RunAssessmentSource",
    "SourceRead",
    "TrainConfig",
    "TrainingInterrupted",
    "train_adapter",
]
