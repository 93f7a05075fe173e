"""Exec a service's command with the environment kept in its private file.

supervisord's `environment=` option cannot carry every value (its parser keeps no escapes: a JSON
connection string with quotes, say, does not survive), and a service's environment holds secrets
that belong neither in a command line nor in a file others read. So a program runs
`python -m instashop.devstack.launch <env.json> -- <command...>`, which replaces itself with the
command (same pid) under exactly that environment. supervisord re-runs it on every restart, so a
restart picks up the file `make up` wrote last.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m instashop.devstack.launch ENV_JSON -- COMMAND [ARG...]")
    env_file, command = Path(argv[0]), argv[2:]
    environment = json.loads(env_file.read_text())
    os.execvpe(command[0], command, environment)


if __name__ == "__main__":
    main(sys.argv[1:])
