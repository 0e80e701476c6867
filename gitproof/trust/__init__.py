"""Who may sign receipts: the only package that reads keys.

* ``keys``: SSH public keys, their one parser and their one fingerprint;
* ``sshsig``: SSHSIG signatures, verified natively (or by ssh-keygen);
* ``allowed_signers``: git's allowed_signers file (parse, patterns, render, append);
* ``revocation``: git's revocation list (``gpg.ssh.revocationFile``);
* ``sources``: a ``SignerSource`` decides one signature; ``Trust`` judges receipts with one;
* ``signer_key``: the public key behind a receipt's signature (for its DSSE envelope);
* ``github``: the GitHub source (keys a GitHub server publishes, fetched and cached);
* ``locate``: which trust files a repository uses, from the working tree or a trusted revision.

What the other layers use is re-exported here.
"""
from __future__ import annotations

from gitproof.trust.allowed_signers import AllowedSigner, AllowedSigners, AllowedSignersError, add_keys
from gitproof.trust.keys import fingerprint_of
from gitproof.trust.locate import TrustError, configured_signers_file, load_trust, signers_file_to_edit
from gitproof.trust.patterns import match_pattern_list
from gitproof.trust.signer_key import receipt_signing_key
from gitproof.trust.sources import AllowedSignersSource, RefuseAll, SignerSource, Trust
from gitproof.trust.sshsig import NAMESPACE

__all__ = [
    "NAMESPACE", "AllowedSigner", "AllowedSigners", "AllowedSignersError", "AllowedSignersSource", "RefuseAll",
    "SignerSource", "Trust", "TrustError", "add_keys", "configured_signers_file", "fingerprint_of", "load_trust",
    "match_pattern_list", "receipt_signing_key", "signers_file_to_edit",
]
