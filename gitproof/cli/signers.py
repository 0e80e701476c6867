"""``git gpu-proof signers``: add GitHub users' keys to allowed_signers, list who is trusted."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pygit2
import typer

from gitproof import git
from gitproof.cli.common import emit_json, errors_as_exit, fail, trusted_commit
from gitproof.policy import Policy, load_policy
from gitproof.text import printable
from gitproof.trust import (AllowedSigner, AllowedSignersSource, add_keys, fingerprint_of, load_trust,
                            signers_file_to_edit)
from gitproof.trust.github import (GitHubKeysError, GitHubSource, check_base_url, fetch_keys, is_valid_username,
                                   keys_url, parse_keys, username_problem)
from gitproof.trust.keys import key_type_of, read_key


# -- shared -----------------------------------------------------------------------------

def _find_repo() -> pygit2.Repository | None:
    """The enclosing repository; unlike other commands, one without commits is fine here."""
    return git.discover()


def _target_file(repo: pygit2.Repository | None, policy: Policy, explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit.expanduser().absolute()
    if repo is None:
        fail(f"{Path.cwd()} is not inside a git repository; pass --file PATH")
    with errors_as_exit():
        return signers_file_to_edit(repo, policy)


def _key_entry(key: str) -> dict[str, str]:
    parsed = read_key(key)
    if parsed is None:  # parse_keys only returns keys read_key accepts
        raise ValueError(f"not a public key: {key!r}")
    blob = parsed[0]
    return {"key_type": key_type_of(blob), "fingerprint": fingerprint_of(blob), "key": key}


def _read_source(source: str | None, user: str, policy: Policy) -> tuple[str, list[str]]:
    """(where the keys came from, the keys) from --from FILE|URL or the policy's GitHub server."""
    if source is None or source.startswith(("http://", "https://")):
        if source is None:
            try:
                url = keys_url(check_base_url(policy.github_url), user)
            except ValueError as exc:
                fail(f"{policy.source}: {exc}")
        else:
            url = source
        try:
            return url, fetch_keys(url)
        except GitHubKeysError as exc:
            if exc.not_found and source is None:
                fail(f"GitHub user {user} not found: {url} answered {exc.detail}")
            fail(f"cannot fetch keys for {user}: {exc}")
    path = Path(source).expanduser()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        fail(f"cannot read keys file {path}: {exc.strerror or exc}")
    return str(path), parse_keys(text)


# -- add --------------------------------------------------------------------------------

def add_or_fail(target: Path, user: str, keys: list[str]) -> tuple[list[str], list[str]]:
    """`add_keys`, a file that cannot be read or written ending the command with status 2."""
    with errors_as_exit():
        return add_keys(target, user, keys)


def add_command(
    github: str = typer.Option(..., "--github", metavar="USER",
                               help="GitHub username: the principal written into allowed_signers "
                                    "(receipts must be signed as this name)."),
    source: Optional[str] = typer.Option(None, "--from", metavar="FILE|URL",
                                         help="Read the keys from a local .keys/.pub file or an "
                                              "http(s) URL instead of <github_url>/USER.keys."),
    file: Optional[Path] = typer.Option(None, "--file", metavar="PATH",
                                        help="The allowed_signers file to add to (default: "
                                             "allowed_signers in pyproject.toml's tool.gpu_proof "
                                             "table, else git config gpg.ssh.allowedSignersFile)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Trust a GitHub user's SSH keys: add them to the allowed_signers file.

    Fetches <github_url>/USER.keys (github_url from the tool.gpu_proof table of
    pyproject.toml, default https://github.com) and appends one line per key,
    `USER namespaces="gpu-proof" <type> <base64>`. Keys already listed for
    USER are not added again. The file (and its directory) is created if
    missing and replaced atomically. Exit status 2 when USER is not a valid
    GitHub username, the keys cannot be read, there are none, or no
    allowed_signers file is configured.
    """
    if not is_valid_username(github):
        fail(username_problem(github))
    repo = _find_repo()
    with errors_as_exit():
        policy = load_policy(repo) if repo is not None else Policy()
    target = _target_file(repo, policy, file)
    origin, keys = _read_source(source, github, policy)
    if not keys:
        fail(f"no SSH public keys for {github} in {origin}")
    added, present = add_or_fail(target, github, keys)
    if as_json:
        emit_json({"principal": github, "file": str(target), "source": origin,
                   "added": [_key_entry(k) for k in added],
                   "already_present": [_key_entry(k) for k in present]})
    else:
        for key in added:
            entry = _key_entry(key)
            typer.echo(f"  + {github} {entry['key_type']} {entry['fingerprint']}")
        typer.echo(f"gpu-proof: {len(added)} key(s) of {github} added to {target}, "
                   f"{len(present)} already present (keys from {origin})")
    if policy.signer_source == "github" and file is None:
        typer.secho("gpu-proof: warning: the policy has signer_source = \"github\"; verification "
                    "does not read this file", fg=typer.colors.YELLOW, err=True)


# -- list -------------------------------------------------------------------------------

def _entry_json(signer: AllowedSigner) -> dict[str, Any]:
    return {"principals": signer.principals, "key_type": signer.key_type,
            "fingerprint": signer.fingerprint, "namespaces": signer.namespaces,
            "valid_after": signer.valid_after.isoformat() if signer.valid_after else None,
            "valid_before": signer.valid_before.isoformat() if signer.valid_before else None,
            "cert_authority": signer.cert_authority, "line": signer.line}


def _entry_line(signer: AllowedSigner) -> str:
    options = ["cert-authority"] if signer.cert_authority else []
    if signer.namespaces is not None:
        options.append(f'namespaces="{printable(signer.namespaces)}"')
    if signer.valid_after:
        options.append(f"valid-after {signer.valid_after.isoformat()}")
    if signer.valid_before:
        options.append(f"valid-before {signer.valid_before.isoformat()}")
    return "  ".join([printable(signer.principals), signer.key_type, signer.fingerprint, *options,
                      f"(line {signer.line})"])


def _narrowing(policy: Policy) -> list[str]:
    lines = []
    if policy.signers:
        lines.append("only signers matching: " + ", ".join(policy.signers))
    if policy.key_fingerprints:
        lines.append("only keys: " + ", ".join(policy.key_fingerprints))
    return lines


def list_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    trust_ref: Optional[str] = typer.Option(None, "--trust-ref", metavar="REV",
                                            help="Read the policy (pyproject.toml) and the allowed_signers "
                                                 "file from REV, as `verify --trust-ref` does."),
) -> None:
    """Show who may sign receipts: the allowed_signers entries, or the GitHub source.

    Reads the trust roots exactly as `verify` does. With signer_source =
    "github" it shows the server, the mode and any names or key fingerprints
    the policy restricts signing to.
    """
    repo = _find_repo()
    if repo is None:
        fail(f"{Path.cwd()} is not inside a git repository")
    trust_ref = trusted_commit(repo, trust_ref)
    with errors_as_exit():
        policy = load_policy(repo, trust_ref)
        trust = load_trust(repo, policy, trust_rev=trust_ref)
    source = trust.source
    data: dict[str, Any] = {"source": policy.signer_source, "mode": policy.signer_mode,
                            "signers": policy.signers, "key_fingerprints": policy.key_fingerprints,
                            "description": source.describe(), "warnings": list(trust.warnings)}
    if isinstance(source, GitHubSource):
        data.update(github_url=source.base_url, keys_url=keys_url(source.base_url, "<user>"),
                    cache_minutes=source.cache_minutes,
                    cache_dir=str(source.cache.directory) if source.cache.enabled else None)
    elif isinstance(source, AllowedSignersSource):
        data.update(file=source.signers.source, entries=[_entry_json(s) for s in source.signers.signers])
    if as_json:
        emit_json(data)
        return
    for warning in trust.warnings:
        typer.secho(f"gpu-proof: warning: {warning}", fg=typer.colors.YELLOW, err=True)
    if isinstance(source, GitHubSource):
        typer.echo(f"signer source: GitHub, keys from {data['keys_url']}")
        if policy.restricted:
            typer.echo("mode: restricted")
        else:
            typer.echo("mode: open (any GitHub user whose published keys verify the signature; "
                       "the receipt's signer is the username)")
        for line in _narrowing(policy):
            typer.echo(line)
        typer.echo(f"keys cached for {source.cache_minutes} min in {source.cache.directory}"
                   if source.cache.enabled else "keys not cached on disk (github_cache_minutes = 0)")
        return
    entries = data.get("entries", [])
    typer.echo(f"signer source: allowed_signers, {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} "
               f"in {data.get('file', source.describe())}")
    for line in _narrowing(policy):
        typer.echo(line)
    if isinstance(source, AllowedSignersSource):
        for signer in source.signers.signers:
            typer.echo(_entry_line(signer))


def register(root: typer.Typer) -> None:
    app = typer.Typer(help="Who may sign receipts: add GitHub users' keys to allowed_signers, "
                           "list the trusted signers.", no_args_is_help=True)
    app.command("add")(add_command)
    app.command("list")(list_command)
    root.add_typer(app, name="signers")
