"""`evalsvc db upgrade|downgrade|current`: migrate the store's schema (Alembic, from any directory).

The default SQLite file migrates itself on first use; a PostgreSQL database (EVALSVC_DATABASE_URL or
--database-url) is migrated with `evalsvc db upgrade` before the service starts.
"""

from __future__ import annotations

import argparse

from evalsvc.cli.common import EXIT_OK, add_store_options, print_json
from evalsvc.settings import Settings
from evalsvc.store import migrate
from evalsvc.store.connection import create_db_engine, parse_database_url, sqlite_path, translate_errors


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "db",
        help="migrate the database schema (upgrade, downgrade, current)",
        description="Apply or revert schema migrations of the evalsvc store and show its revision.",
    )
    actions = parser.add_subparsers(dest="db_action", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="migrate up to REV (default: the latest)")
    upgrade.add_argument("revision", nargs="?", default="head", metavar="REV")
    downgrade = actions.add_parser("downgrade", help="migrate down to REV ('base' drops every table)")
    downgrade.add_argument("revision", metavar="REV")
    current = actions.add_parser("current", help="show the database's revision and the latest one")
    for action in (upgrade, downgrade, current):
        add_store_options(action, data_dir=True)
        action.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.resolved_database_url
    if args.db_action == "current":
        print_json({"database": _shown(url), "current": _current(url), "head": migrate.head_revision()})
        return EXIT_OK
    if args.db_action == "upgrade":
        if settings.database_url is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        before, after = migrate.upgrade(url, args.revision)
    else:
        before, after = migrate.downgrade(url, args.revision)
    print_json({"database": _shown(url), "from": before, "to": after})
    return EXIT_OK


def _current(url: str) -> str | None:
    path = sqlite_path(parse_database_url(url))
    if path is not None and not path.exists():
        return None  # not created yet; asking must not create it
    engine = create_db_engine(url, pooled=False)
    try:
        with translate_errors(engine.url):
            return migrate.current_revision(engine)
    finally:
        engine.dispose()


def _shown(url: str) -> str:
    return parse_database_url(url).render_as_string(hide_password=True)
