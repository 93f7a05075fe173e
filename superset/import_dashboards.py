"""Import the dashboards bundle (superset/dashboards/) into Superset's metadata DB.

Run with Superset's interpreter, as `instashop.devstack.superset` does before each start when the bundle
changed:

    SUPERSET_CONFIG_PATH=superset/superset_config.py INSTASHOP_DATABASE_URIS='{"<database name>": "<uri>"}' \\
        .venv-superset/bin/python superset/import_dashboards.py superset/dashboards admin

It is Superset's "assets" import: databases, datasets, charts and dashboards are created or
overwritten by UUID, in one transaction, so a changed YAML file lands and nothing is duplicated.
The bundle holds no passwords (exports mask them): the URI of each database named in
INSTASHOP_DATABASE_URIS, an environment variable so it shows in no command line, replaces the
bundle's at import; Superset stores it encrypted with SECRET_KEY.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

URIS_VARIABLE = "INSTASHOP_DATABASE_URIS"


def read_bundle(root: Path) -> dict[str, str]:
    """The bundle's files by path inside it, the way Superset reads an export ZIP."""
    return {path.relative_to(root).as_posix(): path.read_text() for path in sorted(root.rglob("*.yaml"))}


def with_database_uris(contents: dict[str, str], uris: dict[str, str]) -> dict[str, str]:
    """Put each named database's real URI in place of the masked one."""
    result = dict(contents)
    missing = set(uris)
    for name, text in contents.items():
        if not name.startswith("databases/"):
            continue
        config = yaml.safe_load(text)
        if config["database_name"] in uris:
            config["sqlalchemy_uri"] = uris[config["database_name"]]
            missing.discard(config["database_name"])
            result[name] = yaml.safe_dump(config, sort_keys=False)
    if missing:
        raise SystemExit(f"no database named {', '.join(sorted(missing))} in the bundle")
    return result


def import_bundle(contents: dict[str, str], username: str) -> None:
    # Superset is imported here: loading it takes seconds and needs SUPERSET_CONFIG_PATH.
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        from superset.commands.importers.v1.assets import ImportAssetsCommand
        from superset.utils.core import override_user

        from superset import security_manager

        user = security_manager.find_user(username=username)
        if user is None:
            raise SystemExit(f"no Superset user {username!r}")
        with override_user(user):  # owner of what gets created; permission checks pass as admin
            ImportAssetsCommand(contents).run()


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise SystemExit(f"usage: {argv[0]} BUNDLE_DIR USERNAME")
    bundle, username = Path(argv[1]), argv[2]
    uris = json.loads(os.environ.get(URIS_VARIABLE, "{}"))
    contents = with_database_uris(read_bundle(bundle), uris)
    import_bundle(contents, username)
    dashboards = sum(1 for name in contents if name.startswith("dashboards/"))
    charts = sum(1 for name in contents if name.startswith("charts/"))
    print(f"imported {dashboards} dashboards and {charts} charts from {bundle}")


if __name__ == "__main__":
    main(sys.argv)
