"""Test-only IAM policy evaluation: tests/iam_sim/simulate.mjs (@cloud-copilot/iam-simulate) from Python.

The simulator is AGPL-3.0-or-later: it lives under tests/iam_sim with its package-lock.json, is
installed there by `npm ci` (tools/bootstrap.sh does it) and is never part of the built collection
(galaxy.yml build_ignore).

    from _iam_sim import simulate, Case
    simulate([Case(principal=..., action="s3:GetObject", resource="arn:aws:s3:::b/k",
                   identity_policies=[doc], context={"aws:SourceVpc": "vpc-1"})])
    -> [SimResult(result="Allowed", ignored_context_keys=[])]

`result` is one of ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY (or "Error" with `errors` set).
`ignored_context_keys` lists the request keys the simulator dropped because they do not apply to
the action/resource: a test that relies on a key should assert it was not dropped.
"""
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIM_DIR = os.path.join(ROOT, "tests", "iam_sim")
ALLOWED = "Allowed"
EXPLICIT_DENY = "ExplicitlyDenied"
IMPLICIT_DENY = "ImplicitlyDenied"


@dataclass
class Case:
    principal: str
    action: str
    resource: str
    identity_policies: list = field(default_factory=list)
    resource_policy: dict = None
    context: dict = field(default_factory=dict)
    account_id: str = None
    permission_boundaries: list = None

    def to_json(self):
        account = self.account_id or _account_of(self.principal)
        out = {
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "accountId": account,
            "context": self.context,
            "identityPolicies": [
                {"name": "policy%d" % i, "policy": _doc(p)} for i, p in enumerate(self.identity_policies)
            ],
        }
        if self.resource_policy is not None:
            out["resourcePolicy"] = _doc(self.resource_policy)
        if self.permission_boundaries:
            out["permissionBoundaryPolicies"] = [
                {"name": "boundary%d" % i, "policy": _doc(p)} for i, p in enumerate(self.permission_boundaries)
            ]
        return out


@dataclass
class SimResult:
    result: str
    ignored_context_keys: list
    errors: dict = None


def _doc(policy):
    return json.loads(policy) if isinstance(policy, str) else policy


def _account_of(arn):
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4] else "123456789012"


def ensure_installed():
    """npm ci in tests/iam_sim when node_modules is missing or older than the lock (idempotent)."""
    marker = os.path.join(SIM_DIR, "node_modules", ".package-lock.json")
    lock = os.path.join(SIM_DIR, "package-lock.json")
    if os.path.exists(marker) and os.path.getmtime(marker) >= os.path.getmtime(lock):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: the IAM simulator needs node >= 20 and npm (tools/bootstrap.sh)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=SIM_DIR, check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)


def simulate(cases):
    """Evaluate every Case in one node run; returns one SimResult per case, in order."""
    ensure_installed()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: the IAM simulator needs node >= 20 (tools/bootstrap.sh)")
    payload = json.dumps([c.to_json() for c in cases])
    proc = subprocess.run([node, os.path.join(SIM_DIR, "simulate.mjs")], input=payload.encode(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=SIM_DIR, timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError("simulate.mjs failed: %s" % proc.stderr.decode(errors="replace"))
    return [SimResult(r["result"], r.get("ignoredContextKeys") or [], r.get("errors"))
            for r in json.loads(proc.stdout)]


def simulate_one(case):
    return simulate([case])[0]
