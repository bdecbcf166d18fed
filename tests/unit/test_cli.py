"""The command as a newcomer meets it (issue 14): help without type tags and with defaults,
and mistakes answered with what to do. Through typer's CliRunner; `serve` never serves here
(ops/app.run is replaced), `query` asks loopback ports where nothing answers."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from consuldns.cli import main
from consuldns.cli.main import app
from consuldns.ops import app as app_module
from consuldns.ops.privileges import DEFAULT_USER_FOR_ROOT
from consuldns.ops.settings import Settings
from tests.harness.ports import free_port, free_tcp_port

runner = CliRunner(env={"CONSULDNS_CONFIG": None, "CONSULDNS_LISTEN": None})  # not the shell's
COMMANDS = [[], ["serve"], ["query"], ["cache"], ["cache", "flush"], ["check-config"]]


def help_text(*command: str) -> str:
    """The help of a command, its table borders and line wrapping taken out."""
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").split())


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "consuldns")
def test_help_shows_no_type_tags(command):
    text = help_text(*command)
    assert not re.search(r"<[a-z][a-z_\[\], |]*>", text), text  # <bool>, <list[str]>, <path>


def test_serve_help_names_every_default():
    text = help_text("serve")
    defaults = Settings()
    for expected in (f"(default {defaults.server.listen[0]})",
                     f"(default {defaults.consul.address})",
                     f"(default {defaults.consul.domain})",
                     f"(default {defaults.server.workers})",
                     f"(default {defaults.admin.listen})",
                     f"(default {DEFAULT_USER_FOR_ROOT})",
                     f"(default {defaults.log.level})",
                     "(default: off)" if not defaults.log.queries else "(default: on)",
                     "[env var: CONSULDNS_LISTEN]"):
        assert expected in text, expected
    serve = typer.main.get_command(app).commands["serve"]
    undocumented = [p.name for p in serve.params if "default" not in (p.help or "")]
    assert undocumented == [], "options whose help names no default"


def test_cache_help_promises_only_what_it_has():
    cache = typer.main.get_command(app).commands["cache"]
    assert sorted(cache.commands) == ["flush"]
    assert "look into" not in help_text("cache").lower()


def test_flushed_counts_read_as_english():
    assert main.flushed_text(1, "web.service.consul.") == "flushed 1 entry for web.service.consul."
    assert main.flushed_text(0, None) == "flushed 0 entries"
    assert main.flushed_text(3, None) == "flushed 3 entries"


def test_config_path_is_absolute_and_normalised(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main._config_path(Path("etc/../etc/./consuldns.toml")) == tmp_path / "etc" / \
        "consuldns.toml"
    monkeypatch.setenv("CONSULDNS_CONFIG", "a/b/../consuldns.toml")
    assert main._config_path(None) == tmp_path / "a" / "consuldns.toml"


# ------------------------------------------------------------------ serve and check-config


@pytest.fixture
def never_serve(monkeypatch):
    """`serve` stops after validation: run() records the settings instead of serving."""
    served = []
    monkeypatch.setattr(app_module, "run", lambda settings, source: served.append(settings) or 0)
    return served


@pytest.mark.parametrize("listen,message", [
    ("localhost:5354", "server.listen[0]: 'localhost:5354': 'localhost' is not an IP address "
                       "(names are not resolved here: write the address, e.g. '127.0.0.1:5354')"),
    ("127.0.0.1", "server.listen[0]: '127.0.0.1' has no port: add one, e.g. '127.0.0.1:53'"),
    ("localhost", "server.listen[0]: 'localhost' has no port and is not an IP address"),
])
def test_serve_says_how_to_write_a_listen_address(never_serve, listen, message):
    result = runner.invoke(app, ["serve", "--listen", listen, "--upstream", "127.0.0.1:9"])
    assert result.exit_code == 2 and never_serve == []
    assert f"command line: {message}" in result.output


@pytest.mark.parametrize("listen,upstream,taken", [
    ("127.0.0.1:5354", "127.0.0.1:5354", "127.0.0.1:5354"),
    ("0.0.0.0:53", "127.0.0.53", "0.0.0.0:53"),
    ("[::]:5354", "[::1]:5354", "[::]:5354"),
])
def test_serve_refuses_itself_as_upstream(never_serve, listen, upstream, taken):
    result = runner.invoke(app, ["serve", "--listen", listen, "--upstream", "192.0.2.1",
                                 "--upstream", upstream])
    assert result.exit_code == 2 and never_serve == []
    assert (f"command line: upstream.servers[1]: '{upstream}' is consuldns itself "
            f"(server.listen '{taken}'): queries sent there would loop back") in result.output


def test_serve_takes_other_ports_and_families_as_upstreams(never_serve):
    result = runner.invoke(app, ["serve", "--listen", "0.0.0.0:5354", "--upstream", "127.0.0.1",
                                 "--upstream", "[::1]:5354", "--admin", "off"])
    assert result.exit_code == 0, result.output
    assert never_serve[0].upstream.servers == ("127.0.0.1", "[::1]:5354")


def test_check_config_refuses_itself_as_zone_server(tmp_path):
    path = tmp_path / "consuldns.toml"
    path.write_text('[server]\nlisten = ["127.0.0.1:5354"]\n[upstream]\nservers = ["10.0.0.1"]\n'
                    '[[zones]]\nname = "corp.example"\nservers = ["127.0.0.1:5354"]\n')
    result = runner.invoke(app, ["check-config", str(path)])
    assert result.exit_code == 1
    assert (f"{path}: zones[0].servers[0]: '127.0.0.1:5354' is consuldns itself (server.listen "
            "'127.0.0.1:5354')") in result.output


BAD_AGENT_ADDRESS = ("consul.http (from $CONSUL_HTTP_ADDR): ftp:// is not http://, https:// or "
                     "unix://; write HOST:PORT, http(s)://HOST:PORT, unix:///PATH or \"off\"")


def test_check_config_reads_the_agent_address_from_the_environment(tmp_path):
    path = tmp_path / "consuldns.toml"
    path.write_text('[upstream]\nservers = ["10.0.0.1"]\n')
    result = runner.invoke(app, ["check-config", str(path)], env={"CONSUL_HTTP_ADDR": "ftp://x"})
    assert result.exit_code == 1
    assert f"{path}: {BAD_AGENT_ADDRESS}" in result.output
    assert "ok" not in result.output


def test_check_config_reads_the_token_file_from_the_environment(tmp_path):
    path = tmp_path / "consuldns.toml"
    path.write_text('[upstream]\nservers = ["10.0.0.1"]\n')
    missing = tmp_path / "no-token"
    result = runner.invoke(app, ["check-config", str(path)],
                           env={"CONSUL_HTTP_TOKEN_FILE": str(missing)})
    assert result.exit_code == 1
    assert (f"{path}: consul.token_file (from $CONSUL_HTTP_TOKEN_FILE): cannot read the token "
            f"file {missing}: No such file or directory; give its path, readable by "
            "consuldns") in result.output


def test_serve_refuses_a_bad_agent_address_from_the_environment(never_serve):
    result = runner.invoke(app, ["serve", "--upstream", "127.0.0.1:9"],
                           env={"CONSUL_HTTP_ADDR": "ftp://x"})
    assert result.exit_code == 2 and never_serve == []
    assert f"command line: {BAD_AGENT_ADDRESS}" in result.output


def test_watch_off_does_not_read_the_agent_address(tmp_path):
    path = tmp_path / "consuldns.toml"
    path.write_text('[upstream]\nservers = ["10.0.0.1"]\n[consul]\nwatch = "off"\n')
    result = runner.invoke(app, ["check-config", str(path)], env={"CONSUL_HTTP_ADDR": "ftp://x"})
    assert result.exit_code == 0, result.output


def test_listen_comes_from_consuldns_listen(never_serve):
    result = runner.invoke(app, ["serve", "--upstream", "127.0.0.1:9"],
                           env={"CONSULDNS_LISTEN": "127.0.0.1:5399"})
    assert result.exit_code == 0, result.output
    assert never_serve[0].server.listen == ("127.0.0.1:5399",)


# ------------------------------------------------------------------ query


HINT = "is consuldns running there? If it listens elsewhere, pass --server HOST:PORT"


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_query_where_nothing_listens_says_so(tcp):
    where = f"127.0.0.1:{free_tcp_port() if tcp else free_port()}"
    result = runner.invoke(app, ["query", "x.test", "--server", where, "--timeout", "2",
                                 *(["--tcp"] if tcp else [])])
    assert result.exit_code == 3
    assert result.output.strip() == f";; nothing listens on {where} (connection refused): {HINT}"


def test_query_to_a_silent_server_says_how_long_it_waited():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        where = f"127.0.0.1:{silent.getsockname()[1]}"
        result = runner.invoke(app, ["query", "x.test", "--server", where, "--timeout", "0.3"])
    assert result.exit_code == 3
    assert result.output.strip() == f";; no reply from {where} within 0.3 s: {HINT}"
