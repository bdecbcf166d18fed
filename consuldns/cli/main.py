"""The `consuldns` command: options only; the work happens in ops/app.py and cli/query.py.

Each command imports what it runs when it runs: `consuldns query` (a Docker health check,
say) should not pay for loading the server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from consuldns import __version__, address
from consuldns.errors import ConfigError


class _HelpWithoutTypes:
    """Help without typer's type tags (`<bool>`, `<str>`, `<list[str]>`): a flag takes no
    value, and every other parameter names its value with its own metavar (HOST:PORT)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
            elif isinstance(param, typer.core.TyperArgument):
                param.display_type_rich = _no_type  # its metavar is its name already
        return params


def _no_type(ctx) -> None:
    """No type column for an argument."""


class Command(_HelpWithoutTypes, typer.core.TyperCommand):
    """A consuldns command (see _HelpWithoutTypes)."""


class Group(_HelpWithoutTypes, typer.core.TyperGroup):
    """A consuldns command group (see _HelpWithoutTypes)."""


app = typer.Typer(cls=Group, add_completion=False, no_args_is_help=True,
                  help="A caching DNS forwarder for hosts that run a Consul agent.")


def _version_callback(value: bool) -> None:
    if value:
        from consuldns import packetio

        typer.echo(f"consuldns {__version__}\n{packetio.describe()}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool | None, typer.Option(
        "--version", callback=_version_callback, is_eager=True,
        help="Print the version and the packet I/O in use.")] = None,
) -> None:
    """consuldns: .consul to the local agent, everything else upstream, cached and shuffled."""


def _config_path(config: Path | None) -> Path | None:
    """--config, else $CONSULDNS_CONFIG, else none (built-in defaults); absolute for reloads
    and normalised for the log (`a/../b` -> `b`; symlinks are kept: a reload follows them)."""
    if config is None and os.environ.get("CONSULDNS_CONFIG"):
        config = Path(os.environ["CONSULDNS_CONFIG"])
    return Path(os.path.abspath(config)) if config is not None else None


DEFAULT_ADMIN = "127.0.0.1:9153"
ADMIN_HELP = "Admin HTTP HOST:PORT of the running consuldns (default $CONSULDNS_ADMIN or " \
             f"{DEFAULT_ADMIN})."


# serve's flags default to None, "not given", so that the config file decides; each help
# text names the built-in default instead (tests/unit/test_cli.py holds them to Settings).
@app.command(cls=Command)
def serve(
    config: Annotated[Path | None, typer.Option(
        metavar="FILE",
        help="TOML config file (default: $CONSULDNS_CONFIG, else built-in defaults).")] = None,
    listen: Annotated[list[str] | None, typer.Option(
        metavar="HOST:PORT", envvar="CONSULDNS_LISTEN",
        help="Address to serve UDP and TCP on; repeatable; IPv6 as [::1]:53 "
             "(default 127.0.0.1:53).")] = None,
    consul: Annotated[str | None, typer.Option(
        metavar="HOST:PORT",
        help="The Consul agent's DNS address (default 127.0.0.1:8600).")] = None,
    consul_http: Annotated[str | None, typer.Option(
        "--consul-http", metavar="ADDRESS",
        help="The agent's HTTP API, watched to keep .consul answers cached "
        "until Consul changes: HOST:PORT, http(s)://HOST:PORT, unix:///PATH or 'off' "
        "(default $CONSUL_HTTP_ADDR, else 127.0.0.1:8500).")] = None,
    upstream: Annotated[list[str] | None, typer.Option(
        metavar="HOST[:PORT]",
        help="Upstream resolver for other names; repeatable "
             "(default: the nameservers of /etc/resolv.conf that are not consuldns).")] = None,
    domain: Annotated[str | None, typer.Option(
        metavar="DOMAIN", help="The Consul domain (default consul).")] = None,
    workers: Annotated[int | None, typer.Option(
        metavar="N", help="Processes sharing the port with SO_REUSEPORT (default 1).")] = None,
    admin: Annotated[str | None, typer.Option(
        metavar="HOST:PORT",
        help="Admin HTTP listener for /metrics, /health, /ready; 'off' disables it "
             f"(default {DEFAULT_ADMIN}).")] = None,
    user: Annotated[str | None, typer.Option(
        metavar="USER",
        help="User to switch to after binding, when started as root (default nobody).")]
    = None,
    log_queries: Annotated[bool | None, typer.Option(
        "--log-queries", help="Log one line per query (default: off).")] = None,
    log_level: Annotated[str | None, typer.Option(
        metavar="LEVEL", help="debug, info, warning or error (default info).")] = None,
) -> None:
    """Serve DNS on UDP and TCP."""
    from consuldns.ops import app as app_module
    from consuldns.ops.config import ConfigSource

    flags = {"listen": listen, "consul": consul, "consul_http": consul_http,
             "upstream": upstream, "domain": domain,
             "workers": workers, "admin": admin, "user": user, "log_queries": log_queries,
             "log_level": log_level}
    source = ConfigSource(_config_path(config), {k: v for k, v in flags.items() if v is not None})
    try:
        settings = source.load()
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from None
    raise typer.Exit(code=app_module.run(settings, source))


@app.command(cls=Command)
def query(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The name to look up.")],
    qtype: Annotated[str, typer.Argument(metavar="TYPE", help="Record type.")] = "A",
    server: Annotated[str, typer.Option(
        metavar="HOST:PORT", help="The server to ask.")] = "127.0.0.1:53",
    tcp: Annotated[bool, typer.Option("--tcp", help="Ask over TCP.")] = False,
    dnssec: Annotated[bool, typer.Option("--dnssec", help="Set the DO bit.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(
        metavar="SECONDS", help="How long to wait for a reply.")] = 3.0,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Also show the route, the cache state (from the admin listener) and "
                          "the Consul agent's own answer, side by side.")] = False,
    admin: Annotated[str | None, typer.Option(metavar="HOST:PORT", help=ADMIN_HELP)] = None,
) -> None:
    """Ask a server like dig would; exit 0 answer, 1 negative, 2 usage, 3 no reply."""
    from consuldns.cli import explain as explain_command
    from consuldns.cli import query as query_command

    try:
        request = query_command.Request.from_text(name, qtype, server, tcp=tcp, dnssec=dnssec,
                                                  timeout=timeout)
        admin_address = _admin_address(admin) if explain else None
    except ValueError as exc:
        typer.echo(f"consuldns query: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if admin_address is not None:
        code = explain_command.run(request, admin_address, json_output=json_output)
    else:
        code = query_command.run(request, json_output=json_output)
    raise typer.Exit(code=code)


def _admin_address(admin: str | None) -> str:
    text = admin or os.environ.get("CONSULDNS_ADMIN") or DEFAULT_ADMIN
    try:
        address.parse(text)
    except ValueError as exc:
        raise ValueError(f"--admin: {exc}") from None
    return text


cache_app = typer.Typer(cls=Group, no_args_is_help=True,
                        help="Flush a running server's cache (`query --explain` shows a "
                             "name's entry).")
app.add_typer(cache_app, name="cache")


@cache_app.command("flush", cls=Command)
def cache_flush(
    name: Annotated[str | None, typer.Argument(
        metavar="NAME", help="Flush only this name (every type); default: the whole cache.")]
    = None,
    admin: Annotated[str | None, typer.Option(metavar="HOST:PORT", help=ADMIN_HELP)] = None,
) -> None:
    """Drop cached answers in a running consuldns (through its admin listener)."""
    from consuldns.cli import adminclient

    try:
        address = _admin_address(admin)
        result = adminclient.flush(address, name)
    except ValueError as exc:
        typer.echo(f"consuldns cache flush: {exc}", err=True)
        raise typer.Exit(code=2) from None
    except adminclient.AdminUnreachable as exc:
        typer.echo(f"consuldns cache flush: {exc}", err=True)
        raise typer.Exit(code=3) from None
    typer.echo(flushed_text(result["flushed"], result.get("name")))


def flushed_text(count: int, name: str | None) -> str:
    """`flushed 1 entry for web.service.consul.`, `flushed 3 entries`."""
    what = f"{count} {'entry' if count == 1 else 'entries'}"
    return f"flushed {what} for {name}" if name else f"flushed {what}"


@app.command("check-config", cls=Command)
def check_config(file: Annotated[Path, typer.Argument(
        metavar="FILE", help="The TOML file to check.")]) -> None:
    """Validate a config file: exit 0 when valid, else one line per problem."""
    from consuldns.ops import config as config_module

    try:
        config_module.load(file)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"{file}: ok")


def main() -> None:
    app(prog_name="consuldns")
