"""The lifecycle queue's policy recommended in docs/eda.md (docs/eda-queue-policy.json), evaluated by
the IAM simulator (tests/iam_sim): only the lifecycle hook's notification role sends, only the
rulebook's and the controller's roles receive, delete and extend, only an admin changes the queue,
never without TLS -- whatever identity policies the other principals of the account hold.
No lab needed.
"""
import json
import os

import pytest

from _iam_sim import ALLOWED, EXPLICIT_DENY, Case, simulate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ACCOUNT = "111122223333"
QUEUE = "arn:aws:sqs:eu-west-1:%s:cloudefigo-asg-lifecycle" % ACCOUNT
NOTIFY = "arn:aws:iam::%s:role/cloudefigo-asg-notification" % ACCOUNT
EDA = "arn:aws:iam::%s:role/cloudefigo-eda" % ACCOUNT
CONTROLLER = "arn:aws:iam::%s:role/cloudefigo-controller" % ACCOUNT
ADMIN = "arn:aws:iam::%s:role/cloudefigo-admin" % ACCOUNT
# principals of the same account that must not forge or steal notifications, each allowed sqs:* by
# its own identity policy: a developer, an instance's role (stolen instance credentials), a user
OTHERS = ["arn:aws:iam::%s:role/developer" % ACCOUNT,
          "arn:aws:iam::%s:role/cloudefigo/cloudefigo-web-1" % ACCOUNT,
          "arn:aws:iam::%s:user/alice" % ACCOUNT]
EVERYTHING = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}
TLS = {"aws:SecureTransport": "true"}
READ = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
ADMIN_ACTIONS = ["sqs:SetQueueAttributes", "sqs:AddPermission", "sqs:DeleteQueue"]


@pytest.fixture(scope="module")
def policy():
    with open(os.path.join(ROOT, "docs", "eda-queue-policy.json")) as handle:
        return json.load(handle)


def case(principal, action, policy, **context):
    # aws:PrincipalArn is the role's ARN for a session of that role (as AWS sets it)
    return Case(principal=principal, action=action, resource=QUEUE, identity_policies=[EVERYTHING],
                resource_policy=policy, context=dict(TLS, **dict({"aws:PrincipalArn": principal}, **context)))


def test_queue_policy(policy):
    expected = [(NOTIFY, "sqs:SendMessage", ALLOWED)]
    expected += [(p, "sqs:SendMessage", EXPLICIT_DENY) for p in OTHERS + [EDA, CONTROLLER, ADMIN]]
    expected += [(p, a, ALLOWED) for p in (EDA, CONTROLLER) for a in READ]
    expected += [(p, a, EXPLICIT_DENY) for p in OTHERS + [NOTIFY] for a in READ + ["sqs:PurgeQueue"]]
    expected += [(ADMIN, a, ALLOWED) for a in ADMIN_ACTIONS]
    expected += [(p, a, EXPLICIT_DENY) for p in OTHERS + [EDA, CONTROLLER, NOTIFY] for a in ADMIN_ACTIONS]
    cases = [case(p, a, policy) for p, a, _want in expected]
    # no TLS, no access: not even the hook's role or the gate
    plain = [(NOTIFY, "sqs:SendMessage"), (EDA, "sqs:ReceiveMessage"), (CONTROLLER, "sqs:DeleteMessage")]
    cases += [case(p, a, policy, **{"aws:SecureTransport": "false"}) for p, a in plain]
    results = simulate(cases)
    wanted = [w for _p, _a, w in expected] + [EXPLICIT_DENY] * len(plain)
    got = [(c.principal, c.action, c.context["aws:SecureTransport"], r.result, r.errors) for c, r in zip(cases, results)]
    assert [g[3] for g in got] == wanted, [g for g, w in zip(got, wanted) if g[3] != w]
    # the decisions rest on the keys the policy names: none was dropped as not applicable
    assert all("aws:PrincipalArn" not in r.ignored_context_keys for r in results)
