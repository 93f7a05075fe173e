"""The supervisord config we write is read back by supervisord itself as we meant it, and a service
started through the launcher gets exactly its environment."""

import json
import shlex
import signal
import subprocess
import sys

from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

from instashop.devstack import registry
from instashop.devstack.service import Service
from instashop.devstack.supervisord import START_RETRIES, environment_file, render_config, write_environment_files
from instashop.settings import load_settings


class _Awkward(Service):
    """A service whose command and environment hold what config files mangle: %, quotes, commas."""

    name = "awkward"
    stop_signal = signal.SIGINT

    def command(self) -> list[str]:
        return ["/usr/bin/env"]

    def environment(self) -> dict[str, str]:
        return {"PERCENT": "50%", "QUOTES": 'say "hi"', "JSON": '{"a": "b, c"}', "BACKSLASH": "C:\\x", "EMPTY": ""}

    def is_healthy(self) -> bool:
        return True


def _read_back(tmp_path, settings, services):
    config = tmp_path / "supervisord.conf"
    write_environment_files(services, tmp_path)
    config.write_text(render_config(settings, services, tmp_path))
    options = ServerOptions()
    options.realize(args=["-c", str(config)])
    return {group.name: group.process_configs[0] for group in options.process_group_configs}, options


def test_every_service_of_the_stack_is_a_program_that_restarts(tmp_path, env_file):
    settings = load_settings(env_file)
    services = registry.all_services(settings)
    programs, options = _read_back(tmp_path, settings, services)

    assert sorted(programs) == sorted(s.name for s in services)
    for service in services:
        program = programs[service.name]
        assert shlex.split(program.command)[-len(service.command()) :] == list(service.command())
        assert program.autorestart is RestartUnconditionally and program.autostart is False
        assert program.startretries == START_RETRIES
        assert program.stopasgroup and program.killasgroup
        assert program.stopsignal == service.stop_signal
        assert program.stdout_logfile == str(service.log_file)
        if service.environment() is not None:
            assert json.loads(environment_file(service, tmp_path).read_text()) == dict(service.environment())
    assert programs["postgres-shop"].uid is not None  # runs as the postgres user
    server = options.server_configs[0]
    assert (server["host"], server["port"]) == ("127.0.0.1", settings.supervisor_port)
    assert (server["username"], server["password"]) == (settings.supervisor_user, settings.supervisor_password)


def test_the_launched_command_gets_exactly_its_environment(tmp_path, env_file):
    settings = load_settings(env_file)
    awkward = _Awkward(settings)
    programs, _ = _read_back(tmp_path, settings, [awkward])
    argv = shlex.split(programs["awkward"].command)
    argv[0] = sys.executable  # the test's interpreter: the clone's venv may not be the one running
    output = subprocess.run(argv, capture_output=True, text=True, check=True, env={}).stdout
    assert dict(line.split("=", 1) for line in output.splitlines()) == awkward.environment()
    assert (
        "QUOTES" not in programs["awkward"].command
        and oct(environment_file(awkward, tmp_path).stat().st_mode)[-3:] == "600"
    )
