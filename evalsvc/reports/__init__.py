"""Reports on stored scores: what users do with them once a run is done.

    run summary       count, mean with 95% CI, distribution, failures; by system, dataset, emotion
    leaderboard       systems of a dataset across runs, NS/WA/EU/ES/Avg (the paper's Table 5)
    paired comparison two systems or runs on the same items: bootstrap CI, win/tie/loss, AB, Wilcoxon
    agreement         judge vs human ratings or a teacher run's scores, utterance and system level
                      (the paper's Table 4)
    text agreement    a run's assessments vs references (a file or a teacher run): BLEU, METEOR,
                      ROUGE-L, CIDEr-D, SER accuracy
    export            items joined with results as CSV, JSON lines or Parquet, streamed
    plots, html       PNG plots and a self-contained HTML page

Every entry point takes a session and the caller's tenant (None: the local CLI, which sees the whole
database) and answers `NotFound` for runs and label sets outside it. Aggregates are computed by the
database (`evalsvc.store.report_queries`); statistics over whole vectors (`evalsvc.stats`) get only the columns they need.
Tenancy (which runs and label sets a caller sees) is `evalsvc.store.scope`.

Modules: `schemas` (result models), `summary`, `compare`, `agreement`, `labels` (label import),
`text_agreement` (references and teacher texts) with `text_metrics` (the metrics), `export`, `tables`
(text and HTML tables), `table5` (the paper's Table 5 over a run group), `plots`, `html`. Front ends: `evalsvc.cli.report`, `evalsvc.cli.labels` and
`evalsvc.api.report_routes`.
"""

from evalsvc.reports.agreement import agreement_report, labelled_scores, teacher_scores
from evalsvc.reports.compare import compare
from evalsvc.reports.export import export_batches, write_export
from evalsvc.reports.html import run_report_html
from evalsvc.reports.labels import import_labels
from evalsvc.reports.summary import leaderboards, run_summary
from evalsvc.store.report_queries import Side

__all__ = [
    "Side",
    "agreement_report",
    "compare",
    "export_batches",
    "import_labels",
    "labelled_scores",
    "leaderboards",
    "run_report_html",
    "run_summary",
    "teacher_scores",
    "write_export",
]
