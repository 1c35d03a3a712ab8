"""Attacks on obfuscated faces: re-identification, reconstruction, and the empirical DP audit.

Public API::

    from privattrib.attacks import run_reid_cell, run_reconstruct_cell, audit
"""

from __future__ import annotations

from privattrib.attacks.audit import AuditResult, UnauditableMechanism, audit
from privattrib.attacks.reconstruction import restore, run_reconstruct_cell, train_reconstructor
from privattrib.attacks.reid import VARIANTS, obfuscate_once, run_reid_cell, split_identity_set

__all__ = [
    "AuditResult",
    "UnauditableMechanism",
    "VARIANTS",
    "audit",
    "obfuscate_once",
    "restore",
    "run_reconstruct_cell",
    "run_reid_cell",
    "split_identity_set",
    "train_reconstructor",
]
