"""The ``zhongshu`` command tree: every command, in one Typer app.

The command modules hold plain functions; this module names them and groups them. The entry
(zhongshu.cli.main) loads it for every command but ``verify``, which it runs alone.
"""

from __future__ import annotations

from pathlib import Path

import typer

from zhongshu import __version__
from zhongshu.cli import chain, evidence, hub, keys, nodes, state, verify
from zhongshu.cli.exits import CLIENT_EXITS, PUT_EXITS

app = typer.Typer(no_args_is_help=True, add_completion=True, help="Zhongshu (中枢) city blockchain hub.")
keys_app = typer.Typer(no_args_is_help=True, help="Key pairs (SM2 or Ed25519).")
node_app = typer.Typer(no_args_is_help=True, help="Run one node from its home directory.")
network_app = typer.Typer(no_args_is_help=True, help="Multi-node networks.")
evidence_app = typer.Typer(no_args_is_help=True, help="Evidence deposit (存证).")
tx_app = typer.Typer(no_args_is_help=True, help="Transactions.")
block_app = typer.Typer(no_args_is_help=True, help="Blocks.")
proof_app = typer.Typer(no_args_is_help=True, help="Offline proof bundles.")
org_app = typer.Typer(no_args_is_help=True, help="Organizations on the hub.")
member_app = typer.Typer(no_args_is_help=True, help="Members of organizations on the hub.")
apps_app = typer.Typer(no_args_is_help=True, help="Applications registered on the hub.")
chain_app = typer.Typer(no_args_is_help=True, help="Business chains on the hub.")
state_app = typer.Typer(no_args_is_help=True, help="A chain's state at any height, with proofs.")
for sub, name in (
    (keys_app, "keys"),
    (node_app, "node"),
    (network_app, "network"),
    (evidence_app, "evidence"),
    (tx_app, "tx"),
    (block_app, "block"),
    (proof_app, "proof"),
    (org_app, "org"),
    (member_app, "member"),
    (apps_app, "app"),
    (chain_app, "chain"),
    (state_app, "state"),
):
    app.add_typer(sub, name=name)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"zhongshu {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """Zhongshu (中枢) city blockchain hub."""


# Running and preparing nodes: exit 1 on any failure.
app.command("up")(nodes.up)
node_app.command("start")(nodes.node_start)
network_app.command("init")(nodes.network_init)
app.command("backup")(nodes.backup)
app.command("restore")(nodes.restore)
app.command("bench")(nodes.bench)

# Talking to a gateway: exit 1 refused, 2 usage or file, 3 unreachable (zhongshu.cli.exits).
app.command("status", epilog=CLIENT_EXITS)(chain.status)
tx_app.command("get", epilog=CLIENT_EXITS)(chain.tx_get)
block_app.command("get", epilog=CLIENT_EXITS)(chain.block_get)
proof_app.command("get", epilog=CLIENT_EXITS)(chain.proof_get)
evidence_app.command("put", epilog=PUT_EXITS)(evidence.evidence_put)
evidence_app.command("get", epilog=CLIENT_EXITS)(evidence.evidence_get)
evidence_app.command("list", epilog=CLIENT_EXITS)(evidence.evidence_list)
evidence_app.command("check", epilog=CLIENT_EXITS)(state.evidence_check)
state_app.command("get", epilog=CLIENT_EXITS)(state.state_get)
keys_app.command("new")(keys.keys_new)
keys_app.command("show")(keys.keys_show)
org_app.command("create", epilog=CLIENT_EXITS)(hub.org_create)
org_app.command("disable", epilog=CLIENT_EXITS)(hub.org_disable)
member_app.command("add", epilog=CLIENT_EXITS)(hub.member_add)
apps_app.command("register", epilog=CLIENT_EXITS)(hub.app_register)
apps_app.command("rotate-key", epilog=CLIENT_EXITS)(hub.app_rotate_key)
apps_app.command("disable", epilog=CLIENT_EXITS)(hub.app_disable)
apps_app.command("show", epilog=CLIENT_EXITS)(hub.app_show)
chain_app.command("create", epilog=CLIENT_EXITS)(hub.chain_create)
chain_app.command("list", epilog=CLIENT_EXITS)(hub.chain_list)
chain_app.command("stop", epilog=CLIENT_EXITS)(hub.chain_stop)


# Offline: exit 0 valid, 1 invalid, 2 a file cannot be read. The entry runs `zhongshu verify`
# without this tree (zhongshu.cli.verify.run); here it is for --help and the command list.
@app.command("verify", help=verify.VERIFY_HELP)
def _verify(
    bundle: Path = typer.Argument(..., help=verify.BUNDLE_HELP),
    file: Path = typer.Option(None, help=verify.FILE_HELP),
    trust: Path = typer.Option(None, help=verify.TRUST_HELP),
) -> None:
    status = verify.check_bundle(bundle, file, trust)
    if status:
        raise typer.Exit(status)
