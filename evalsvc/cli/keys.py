"""`evalsvc keys create --tenant NAME` / `evalsvc keys revoke ID`: API keys of the HTTP service.

A key is printed once, when created; the store keeps only its sha256.
"""

from __future__ import annotations

import argparse

from evalsvc.cli.common import EXIT_OK, add_store_options, print_json
from evalsvc.settings import Settings
from evalsvc.store import Store, issue_api_key, revoke_api_key
from evalsvc.store.tenants import ensure_tenant


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "keys",
        help="create or revoke API keys of the HTTP service",
        description="API keys belong to a tenant: results scored with a key are visible to its tenant only.",
    )
    actions = parser.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key (and the tenant if new); prints it once")
    create.add_argument("--tenant", required=True, help="tenant name, e.g. a team")
    create.add_argument("--name", default="", help="what the key is for, to tell keys apart later")
    revoke = actions.add_parser("revoke", help="revoke a key by its id (as printed by create)")
    revoke.add_argument("key_id", type=int, metavar="ID")
    for action in (create, revoke):
        add_store_options(action, data_dir=True)
        action.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    store = Store.from_settings(settings)
    if args.keys_action == "revoke":
        with store.session() as session:
            revoke_api_key(session, args.key_id)
        print_json({"revoked": args.key_id})
        return EXIT_OK
    tenant = ensure_tenant(store, args.tenant)
    with store.session() as session:
        row, key = issue_api_key(session, tenant.id, args.name)
        key_id, prefix = row.id, row.prefix
    print_json({"tenant": tenant.name, "key_id": key_id, "prefix": prefix, "key": key})
    return EXIT_OK
