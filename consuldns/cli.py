"""The `consuldns` command: options only; the work happens in app.py and querycmd.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from consuldns import __version__
from consuldns.errors import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True,
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
    """--config, else $CONSULDNS_CONFIG, else none (built-in defaults); absolute for reloads."""
    if config is None and os.environ.get("CONSULDNS_CONFIG"):
        config = Path(os.environ["CONSULDNS_CONFIG"])
    return config.absolute() if config is not None else None


DEFAULT_ADMIN = "127.0.0.1:9153"
ADMIN_HELP = "Admin HTTP HOST:PORT of the running consuldns (default $CONSULDNS_ADMIN or " \
             f"{DEFAULT_ADMIN})."


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option(
        help="TOML config file (default: $CONSULDNS_CONFIG, else built-in defaults).")] = None,
    listen: Annotated[list[str] | None, typer.Option(
        help="HOST:PORT to serve UDP and TCP on; repeatable; IPv6 as [::1]:53.")] = None,
    consul: Annotated[str | None, typer.Option(
        help="The Consul agent's DNS address (default 127.0.0.1:8600).")] = None,
    upstream: Annotated[list[str] | None, typer.Option(
        help="Upstream resolver HOST[:PORT] for other names; repeatable "
             "(default: nameservers of /etc/resolv.conf).")] = None,
    domain: Annotated[str | None, typer.Option(help="The Consul domain (default consul).")]
    = None,
    workers: Annotated[int | None, typer.Option(
        help="Processes sharing the port with SO_REUSEPORT.")] = None,
    admin: Annotated[str | None, typer.Option(
        help="Admin HTTP HOST:PORT for /metrics, /health, /ready; 'off' disables it.")] = None,
    user: Annotated[str | None, typer.Option(
        help="User to switch to after binding (default nobody when root).")] = None,
    log_queries: Annotated[bool | None, typer.Option(
        "--log-queries", help="Log one line per query.")] = None,
    log_level: Annotated[str | None, typer.Option(
        help="debug, info, warning or error.")] = None,
) -> None:
    """Serve DNS on UDP and TCP."""
    from consuldns import app as app_module
    from consuldns.config import ConfigSource

    flags = {"listen": listen, "consul": consul, "upstream": upstream, "domain": domain,
             "workers": workers, "admin": admin, "user": user, "log_queries": log_queries,
             "log_level": log_level}
    source = ConfigSource(_config_path(config), {k: v for k, v in flags.items() if v is not None})
    try:
        settings = source.load()
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from None
    raise typer.Exit(code=app_module.run(settings, source))


@app.command()
def query(
    name: Annotated[str, typer.Argument(help="The name to look up.")],
    qtype: Annotated[str, typer.Argument(metavar="TYPE", help="Record type (default A).")] = "A",
    server: Annotated[str, typer.Option(help="Server HOST:PORT to ask.")] = "127.0.0.1:53",
    tcp: Annotated[bool, typer.Option("--tcp", help="Ask over TCP.")] = False,
    dnssec: Annotated[bool, typer.Option("--dnssec", help="Set the DO bit.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a reply.")] = 3.0,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Also show the route, the cache state (from the admin listener) and "
                          "the Consul agent's own answer, side by side.")] = False,
    admin: Annotated[str | None, typer.Option(help=ADMIN_HELP)] = None,
) -> None:
    """Ask a server like dig would; exit 0 answer, 1 negative, 2 usage, 3 no reply."""
    from consuldns import querycmd

    try:
        request = querycmd.Request.from_text(name, qtype, server, tcp=tcp, dnssec=dnssec,
                                             timeout=timeout)
        admin_address = _admin_address(admin) if explain else None
    except ValueError as exc:
        typer.echo(f"consuldns query: {exc}", err=True)
        raise typer.Exit(code=2) from None
    raise typer.Exit(code=querycmd.run(request, json_output=json_output, explain=admin_address))


def _admin_address(admin: str | None) -> str:
    from consuldns.listener import parse_listen

    address = admin or os.environ.get("CONSULDNS_ADMIN") or DEFAULT_ADMIN
    try:
        parse_listen(address)
    except (ValueError, OSError):
        raise ValueError(f"--admin {address!r} is not HOST:PORT") from None
    return address


cache_app = typer.Typer(no_args_is_help=True, help="Look into or flush a running server's cache.")
app.add_typer(cache_app, name="cache")


@cache_app.command("flush")
def cache_flush(
    name: Annotated[str | None, typer.Argument(
        help="Flush only this name (every type); default: the whole cache.")] = None,
    admin: Annotated[str | None, typer.Option(help=ADMIN_HELP)] = None,
) -> None:
    """Drop cached answers in a running consuldns (through its admin listener)."""
    from consuldns import adminclient

    try:
        address = _admin_address(admin)
        result = adminclient.flush(address, name)
    except ValueError as exc:
        typer.echo(f"consuldns cache flush: {exc}", err=True)
        raise typer.Exit(code=2) from None
    except adminclient.AdminUnreachable as exc:
        typer.echo(f"consuldns cache flush: {exc}", err=True)
        raise typer.Exit(code=3) from None
    what = f"entries for {result['name']}" if result.get("name") else "entries"
    typer.echo(f"flushed {result['flushed']} {what}")


@app.command("check-config")
def check_config(file: Annotated[Path, typer.Argument(help="The TOML file to check.")]) -> None:
    """Validate a config file: exit 0 when valid, else one line per problem."""
    from consuldns import config as config_module

    try:
        config_module.load(file)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"{file}: ok")


def main() -> None:
    app(prog_name="consuldns")
