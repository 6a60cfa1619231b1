"""`evalsvc labels import FILE --name SET [--run RUN]` and `evalsvc labels list`: human ratings.

The file format and how labels meet scores are described in `evalsvc.reports.labels` and README
"Reports". An import creates the label set; a file with problems stores nothing and lists every
problem with its line number (exit code 2).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from evalsvc.cli.common import EXIT_OK, add_store_options, add_tenant_option, print_json, tenant_id_for
from evalsvc.reports.labels import import_labels
from evalsvc.settings import Settings
from evalsvc.store import Store
from evalsvc.store.report_queries import label_sets
from evalsvc.store.scope import tenant_id_by_name


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "labels",
        help="import human NS/WA/EU/ES ratings for agreement reports",
        description="Human ratings, grouped in named label sets; see `evalsvc report agreement`.",
    )
    actions = parser.add_subparsers(dest="labels_action", required=True, metavar="ACTION")
    load = actions.add_parser("import", help="create a label set from a CSV or JSON lines file")
    load.add_argument("file", type=Path, metavar="FILE", help="rows of id, NS, WA, EU, ES and optional rater")
    load.add_argument("--name", required=True, metavar="SET", help="name of the new label set")
    load.add_argument("--description", help="what the set is (study, rater pool)")
    load.add_argument(
        "--run", type=int, metavar="RUN", help="check the ids against this run and record their audio hashes"
    )
    add_tenant_option(load, "the label set")
    listing = actions.add_parser("list", help="the label sets, with their numbers of ratings and items")
    listing.add_argument("--tenant", help="only this tenant's label sets (default: all)")
    for action in (load, listing):
        add_store_options(action, data_dir=True)
        action.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    store = Store.from_settings(settings)
    importing = args.labels_action == "import"
    tenant_id = tenant_id_for(store, args.tenant) if importing else None
    with store.session() as session:
        if importing:
            imported = import_labels(
                session,
                args.file,
                args.name,
                tenant_id=tenant_id,
                run_id=args.run,
                description=args.description,
            )
            print_json(asdict(imported))
            return EXIT_OK
        rows = session.execute(label_sets(tenant_id_by_name(session, args.tenant)))
        print_json(
            [
                {"name": name, "description": description, "ratings": ratings, "items": items}
                for name, description, ratings, items in rows
            ]
        )
    return EXIT_OK
