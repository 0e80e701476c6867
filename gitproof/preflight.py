"""Before ``git gpu-proof run`` starts the tests: can the key sign, and will the signer count?

A run that can only find out at the end that its key cannot sign wastes the
whole run. So ``run`` resolves the key exactly as the recorder will, and has
it sign a probe message at once, with no terminal to answer prompts: that
fails when the key file is missing, when ssh-agent does not hold a key it
must hold, or when the key is protected by a passphrase.

A passphrase-protected key file that ssh-agent does not hold is unlocked up
front instead, when a terminal is there: ``ssh-keygen`` asks for the
passphrase once, and the decrypted key reaches the recorder the way
``--key-env`` does (an environment variable of the run, hidden from the
tests, written to disk only as a 0600 file in a private directory while the
receipt is signed). Nobody has to type it again at the end of a long run.

The probe signature is also checked against the repository's trust roots,
so a signer that ``verify`` would not accept is warned about before the run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pygit2

from gitproof import signing
from gitproof.compat import Personal
from gitproof.policy import Policy, PolicyError, load_policy
from gitproof.record import policy_key
from gitproof.signing import SigningError, SigningKey

UNLOCKED_KEY_VARIABLE = "GITPROOF_UNLOCKED_KEY"


@dataclass
class SigningPlan:
    """What the run passes on to the recorder, and what to tell the user."""

    key: str | None = None  # --gpu-proof-key
    key_env: str | None = None  # --gpu-proof-key-env
    environment: dict[str, str] = field(default_factory=dict, repr=False)  # the unlocked key, if any
    warnings: list[str] = field(default_factory=list)


def plan_signing(repo: pygit2.Repository, key: str | None, key_env: str | None, principal: str | None,
                 interactive: bool, say: Callable[[str], None]) -> SigningPlan:
    """Check the key can sign now (unlocking it once if needed); SigningError when it cannot."""
    plan = SigningPlan(key, key_env)
    if key and key_env:
        return plan  # the recorder refuses the pair, saying why
    policy = _policy_or_none(repo)
    defaults = policy.personal if policy is not None else Personal()
    resolved = (signing.key_from_env(repo, key_env) if key_env
                else signing.resolve_signing_key(repo, key or (policy_key(policy, repo.workdir) if policy else None)))
    who = principal or defaults.principal or signing.default_principal(repo)
    if signing.public_key_of(resolved).startswith("sk-"):
        return plan  # a FIDO key would ask for a touch now and again at the end: no probe
    try:
        signature = signing.probe(resolved)
    except SigningError as exc:
        if not signing.needs_passphrase(resolved):
            raise SigningError(f"the signing key cannot sign: {exc}{_agent_hint(resolved)}") from exc
        resolved, signature = _unlocked(repo, resolved, plan, interactive, say)
    warning = signer_warning(repo, policy, who, signature) if policy is not None else None
    if warning:
        plan.warnings.append(warning)
    return plan


def _policy_or_none(repo: pygit2.Repository) -> Policy | None:
    """The policy, read once for both the key defaults and the trust check; None when it is
    invalid (the run itself then refuses, saying why)."""
    try:
        return load_policy(repo)
    except PolicyError:
        return None


def _unlocked(repo: pygit2.Repository, key: SigningKey, plan: SigningPlan, interactive: bool,
              say: Callable[[str], None]) -> tuple[SigningKey, str]:
    if not interactive:
        raise SigningError(
            f"the signing key {key.spec} is protected by a passphrase, ssh-agent does not hold it, and "
            f"there is no terminal to type the passphrase: add it to the agent first (`ssh-add {key.spec}`), "
            "or sign with an unencrypted key (in CI: --key-env VAR)")
    say(f"gpu-proof: {key.spec} is protected by a passphrase and ssh-agent does not hold it: type it "
        "once now, before the tests (`ssh-add` the key to skip this)")
    text = signing.unlock(key).decode("utf-8", errors="replace")
    unlocked = signing.key_from_env(repo, UNLOCKED_KEY_VARIABLE, {UNLOCKED_KEY_VARIABLE: text})
    plan.key, plan.key_env = None, UNLOCKED_KEY_VARIABLE
    plan.environment = {UNLOCKED_KEY_VARIABLE: text}
    return unlocked, signing.probe(unlocked)


def _agent_hint(key: SigningKey) -> str:
    if key.literal or (key.path is not None and key.path.suffix == ".pub"):
        return (" (this key signs through ssh-agent: start the agent and add the private key, "
                "`ssh-add ~/.ssh/id_ed25519`)")
    return ""


def signer_warning(repo: pygit2.Repository, policy: Policy, principal: str, signature: str) -> str | None:
    """Why ``verify`` would not accept this signer here, or None.

    Asks the repository's own trust roots to judge the probe signature, as
    they will judge the receipt's. A policy that names GitHub as the signer
    source is not asked (that would fetch keys before every run).
    """
    from gitproof.trust import AllowedSignersSource, TrustError, load_trust

    try:
        trust = load_trust(repo, policy)
    except TrustError as exc:
        return f"receipts cannot be verified in this repository yet: {exc}"
    if not isinstance(trust.source, AllowedSignersSource):
        return None
    decision = trust.source.decide(signing.PROBE_PAYLOAD, signature, principal, trust.now)
    if decision.allowed:
        return None
    return (f"the signer {principal} ({decision.fingerprint}) is not trusted by "
            f"{trust.source.signers.source}: {decision.reason}. The run goes ahead, but `git gpu-proof "
            "verify` will reject its receipt until that file admits this key for this principal "
            "(`git gpu-proof signers add`, or a line `<principal> namespaces=\"gpu-proof\" <public key>`)")
