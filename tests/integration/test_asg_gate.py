"""The Auto Scaling gate (issue 15, section 1): playbooks/asg_gate.yml against the lab's lifecycle stand-in.

The lab's AWS proxy plays AWS's lifecycle state machine on top of moto (lab/services/asg_lifecycle.py):
instances held in Pending:Wait / Terminating:Wait, CompleteLifecycleAction, heartbeats and timeouts,
ABANDON -> terminated and replaced.  No VM: the instances are stand-ins, and the test plays the
instance's part where pull mode (its own issue) proves it on a VM -- it registers its Chef node
(marked for the instance), reports the converge, and tags itself cloudefigo:progress=done.
State is asserted with boto3 (through moto), the Chef API, the Nessus simulator's scan list and
the proxy's request log.
"""
import json
import os
import ssl
import threading
import time
import urllib.request
import uuid

import pytest

from _lab import ROOT, chef_client, moto_post, nessus_switch, poll, run_playbook, secure_launch_lab_vars

# no VM: runs in the VM lab's lane to balance the two integration lanes (tools/integration.sh)
pytestmark = pytest.mark.vmlane

PLAYBOOK = os.path.join(ROOT, "playbooks", "asg_gate.yml")
KEY_BUCKET = "asg-gate-keys"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
ROLE = "arn:aws:iam::123456789012:role/lab-asg-notifications"


def control(lab, path, payload=None):
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(lab["LAB_AWS_PROXY_ENDPOINT"] + "/_lab/proxy/" + path, data=data,
                                 method="GET" if data is None else "POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def nessus_state(lab):
    ctx = ssl.create_default_context(cafile=lab["LAB_NESSUS_CA"])
    req = urllib.request.Request(lab["LAB_NESSUS_URL"] + "/_sim/state", headers={"X-Sim-Token": lab["LAB_NESSUS_ADMIN_TOKEN"]})
    with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
        return json.loads(resp.read())


def scans_of(lab, target):
    """The runs the Nessus simulator made against `target`."""
    return [run for scan in nessus_state(lab)["scans"].values() if target in scan["targets"] for run in scan["runs"]]


class Lab:
    """boto3 on the proxy (the lifecycle stand-in answers there), the Chef API, the gate's runs."""

    def __init__(self, lab, tmp_path):
        import boto3
        self.lab = lab
        self.tmp = tmp_path
        kw = dict(endpoint_url=lab["LAB_AWS_PROXY_ENDPOINT"], region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing")
        self.asg, self.ec2, self.s3, self.iam, self.sqs = (boto3.client(s, **kw) for s in ("autoscaling", "ec2", "s3", "iam", "sqs"))
        self.chef = chef_client(lab)
        self.targets = []
        self.threads = []

    def group(self, name, hooks, desired, profile=None):
        data = {"ImageId": "ami-1e749f67", "InstanceType": "t3.micro",
                # a launch template may carry any tag: the gate never takes one for evidence
                "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "SecurityStatus", "Value": "production"}]}]}
        if profile:
            data["IamInstanceProfile"] = {"Name": profile}
        self.ec2.create_launch_template(LaunchTemplateName=name + "-lt", LaunchTemplateData=data)
        self.asg.create_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, MaxSize=6, DesiredCapacity=0,
                                           AvailabilityZones=["us-east-1a"],
                                           LaunchTemplate={"LaunchTemplateName": name + "-lt", "Version": "$Latest"})
        for hook in hooks:
            self.asg.put_lifecycle_hook(AutoScalingGroupName=name, **hook)
        self.asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=desired)
        return poll(lambda: self.waiting(name, "Pending:Wait", desired))

    def states(self, name):
        groups = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return {i["InstanceId"]: i["LifecycleState"] for i in groups[0]["Instances"]} if groups else {}

    def waiting(self, name, state, count):
        found = sorted(i for i, s in self.states(name).items() if s == state)
        return found if len(found) == count else None

    def instance(self, instance_id):
        return self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]

    def tags(self, instance_id):
        return {t["Key"]: t["Value"] for t in self.instance(instance_id).get("Tags", [])}

    def groups_of(self, instance_id):
        return sorted(g["GroupName"] for g in self.instance(instance_id)["SecurityGroups"])

    def scan_as(self, instance_id, behaviour):
        target = self.instance(instance_id)["PrivateIpAddress"]
        nessus_switch(self.lab, target, behaviour)
        self.targets.append(target)
        return target

    def register_node(self, instance_id, marks=True):
        """A converged Chef node reporting instance_id (and its client), as chef-client leaves it."""
        self.chef.request("POST", "/clients", data={"name": instance_id, "admin": False})
        node = {"name": instance_id, "chef_type": "node", "json_class": "Chef::Node", "chef_environment": "_default",
                "run_list": ["recipe[base]"], "normal": {},
                "automatic": {"ohai_time": time.time(), "ec2": {"instance_id": instance_id},
                              "ipaddress": self.instance(instance_id)["PrivateIpAddress"]}}
        if marks:
            node["normal"] = {"cloudefigo": {"instance_id": instance_id, "launch_id": "asg-" + instance_id}}
        self.chef.request("POST", "/nodes", data=node)

    def play_instance(self, instance_id, chef=True, progress="done"):
        """What the instance does in pull mode once it has its role's credentials (the gate associated its
        profile): registers its Chef node with the validator (no marks: the gate adds them), converges,
        and reports progress. In the background, while the gate runs."""
        import boto3
        kw = dict(endpoint_url=self.lab["LAB_AWS_ENDPOINT"], region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing")
        ec2 = boto3.client("ec2", **kw)

        def has_own_profile():
            found = ec2.describe_iam_instance_profile_associations(
                Filters=[{"Name": "instance-id", "Values": [instance_id]}])["IamInstanceProfileAssociations"]
            return any(a["IamInstanceProfile"]["Arn"].endswith("/cloudefigo-" + instance_id) for a in found)

        def work():
            deadline = time.monotonic() + 900
            while not has_own_profile():
                if time.monotonic() > deadline:
                    return
                time.sleep(0.5)
            if chef:
                self.register_node(instance_id, marks=False)
            if progress:
                ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "cloudefigo:progress", "Value": progress}])

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        self.threads.append(thread)

    def key_versions(self, name):
        answer = self.s3.list_object_versions(Bucket=KEY_BUCKET, Prefix="volumes/%s.key" % name)
        return answer.get("Versions", []) + answer.get("DeleteMarkers", [])

    def role(self, name):
        try:
            return self.iam.get_role(RoleName="cloudefigo-" + name)["Role"]
        except self.iam.exceptions.NoSuchEntityException:
            return None

    def gate(self, name, **settings):
        extra = dict(secure_launch_lab_vars(self.lab), **{
            "cloudefigo_aws_endpoint_url": self.lab["LAB_AWS_PROXY_ENDPOINT"],
            "secure_launch_key_bucket": KEY_BUCKET,
            "secure_launch_omit_conditioned_denies": True,
            "secure_launch_report_dir": str(self.tmp),
            "secure_launch_nessus_poll_interval": 1,
            "secure_launch_nessus_fail_on": "critical",
            "asg_gate_groups": [name],
            "asg_gate_pull_poll_interval": 1,
            "asg_gate_pull_timeout": 5,
            "asg_gate_summary_file": str(self.tmp / ("summary-%s.json" % uuid.uuid4().hex[:8])),
        })
        extra.update(settings)
        result = run_playbook(self.lab, PLAYBOOK, extra_vars=extra, json_output=False)
        with open(self.tmp / "gate.out", "a") as handle:
            handle.write(result.stdout + result.stderr)
        summary = json.loads(open(extra["asg_gate_summary_file"]).read()) if os.path.exists(extra["asg_gate_summary_file"]) else None
        return result, summary

    def receive(self, queue, instance_id):
        """The lifecycle notification for instance_id (the test notification is dropped, as the rulebook does)."""
        for message in self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            if json.loads(message["Body"]).get("EC2InstanceId") == instance_id:
                return message
            self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return None

    def requests(self, action):
        return [r for r in control(self.lab, "requests")["requests"] if r.get("action") == action]

    def completions(self, instance_id):
        return [e for e in control(self.lab, "asg")["events"] if e["instance_id"] == instance_id and e.get("result")]


@pytest.fixture
def gate_lab(lab, aws, tmp_path):
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator")
    control(lab, "reset", {})
    env = Lab(lab, tmp_path)
    env.s3.create_bucket(Bucket=KEY_BUCKET)
    yield env
    for target in env.targets:
        nessus_switch(lab, target, None)
    control(lab, "reset", {})
    moto_post(lab, "/moto-api/reset-auth", b"inf")
    for kind in ("nodes", "clients"):
        for name in env.chef.request("GET", "/" + kind):
            if name.startswith("i-"):
                env.chef.request("DELETE", "/%s/%s" % (kind, name), missing_ok=True)


def _summary(summary):
    return {i["instance_id"]: i["outcome"] for i in summary["instances"]}


def test_two_runs_at_once_gate_once_then_scale_in_shreds(gate_lab):
    """Schedule and event at once: one claim wins, one scan, one CompleteLifecycleAction; the event's
    SQS message is kept alive while its run works and deleted only once the instance is done; then a
    scale-in crypto-shreds the key and deletes role, profile, node and client."""
    env = gate_lab
    name = "gate-twice"
    queue = env.sqs.create_queue(QueueName="gate-twice", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    arn = env.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    notify = {"NotificationTargetARN": arn, "RoleARN": ROLE}
    instance, = env.group(name, [dict(LifecycleHookName="launch", LifecycleTransition=LAUNCHING, HeartbeatTimeout=120,
                                      DefaultResult="ABANDON", **notify),
                                 dict(LifecycleHookName="shred", LifecycleTransition=TERMINATING, HeartbeatTimeout=120)], 1)
    target = env.scan_as(instance, {"scan_seconds": 2})
    env.play_instance(instance)
    message = poll(lambda: env.receive(queue, instance))
    event = {"asg_gate_groups": [], "asg_gate_instance_id": instance, "asg_gate_sqs_queue_url": queue,
             "asg_gate_sqs_receipt_handle": message["ReceiptHandle"]}

    before = max(r["seq"] for r in control(env.lab, "requests")["requests"])
    outcomes = [None, None]

    def run(index):
        # the event (the rulebook's run) and the schedule
        outcomes[index] = env.gate(name, **(event if index == 0 else {}))

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summaries = [summary for _result, summary in outcomes]
    assert all(s is not None for s in summaries), [r.stdout[-3000:] for r, _s in outcomes]
    gated = [s for s in summaries if s["instances"]]
    assert len(gated) == 1, summaries
    assert _summary(gated[0]) == {instance: "production"}
    other = [s for s in summaries if not s["instances"]]
    assert other and other[0]["held_by_another_run"] == [instance], summaries
    assert all(r.rc == 0 for r, _s in outcomes), [r.stdout[-3000:] for r, _s in outcomes]

    assert len(scans_of(env.lab, target)) == 1
    assert len(env.requests("CompleteLifecycleAction")) == 1
    complete = env.requests("CompleteLifecycleAction")[0]["seq"]
    deletes = [r["seq"] for r in env.requests("DeleteMessage") if r["seq"] > before]
    if gated[0] is summaries[0]:
        # the event's run gated it: the message outlived the work, then went
        assert env.requests("ChangeMessageVisibility") and deletes and min(deletes) > complete
    else:
        # the schedule's run gated it: the event's run left the message (its instance still waited)
        assert deletes == []
        result, summary = env.gate(name, **event)
        assert result.rc == 0 and summary["instances"] == [], result.stdout[-3000:]
        assert len([r for r in env.requests("DeleteMessage") if r["seq"] > before]) == 1
        # that run found nothing to gate: the instance no longer waits
        assert len(env.requests("CompleteLifecycleAction")) == 1 and len(scans_of(env.lab, target)) == 1
    counts = env.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert counts == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}, counts
    assert [(e["result"], e["cause"]) for e in env.completions(instance)][:1] == [("CONTINUE", "CompleteLifecycleAction")] or \
        [e["result"] for e in env.completions(instance)] == ["CONTINUE"]
    poll(lambda: env.states(name).get(instance) == "InService")
    assert env.groups_of(instance) == ["cloudefigo-production"]
    tags = env.tags(instance)
    assert tags["SecurityStatus"] == "production" and tags["cloudefigo:launch-id"] == "asg-" + instance
    role = env.role(instance)
    assert role is not None
    profile = env.instance(instance)["IamInstanceProfile"]["Arn"]
    assert profile.endswith("/cloudefigo-" + instance)
    policies = env.iam.list_role_policies(RoleName="cloudefigo-" + instance)["PolicyNames"]
    document = json.dumps([env.iam.get_role_policy(RoleName="cloudefigo-" + instance, PolicyName=p)["PolicyDocument"] for p in policies])
    assert "volumes/%s.key" % instance in document
    assert len(env.key_versions(instance)) == 1
    claim = env.s3.list_object_versions(Bucket=KEY_BUCKET, Prefix="claims/asg-gate/%s.claim" % instance).get("Versions", [])
    assert len(claim) == 1
    record = "cloudefigo-records/us-east-1/" + instance
    assert env.s3.list_objects_v2(Bucket=KEY_BUCKET, Prefix=record).get("KeyCount") == 1
    # the data volume the pull-mode user data waits for: attached, encrypted, marked, named in its tag and the record
    volume_id = tags["cloudefigo:data-volume"]
    volume = env.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert volume["Encrypted"] and [a["InstanceId"] for a in volume["Attachments"]] == [instance]
    assert {t["Key"]: t["Value"] for t in volume["Tags"]}["cloudefigo:instance-id"] == instance
    record_tags = {t["Key"]: t["Value"] for t in env.s3.get_object_tagging(Bucket=KEY_BUCKET, Key=record)["TagSet"]}
    assert record_tags["cloudefigo:volumes"].split() == [volume_id]

    # scale-in: the terminating hook holds it, the gate cleans up, then CONTINUE
    env.asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=0)
    poll(lambda: env.states(name).get(instance) == "Terminating:Wait")
    result, summary = env.gate(name)
    assert result.rc == 0, result.stdout[-5000:]
    assert _summary(summary) == {instance: "cleaned_up"}
    # the launch was not gated again: one scan, the launch's and the termination's completions
    assert len(scans_of(env.lab, target)) == 1
    assert [e["result"] for e in env.completions(instance)] == ["CONTINUE", "CONTINUE"]
    assert env.key_versions(instance) == []
    assert env.role(instance) is None
    assert not env.iam.list_instance_profiles()["InstanceProfiles"]
    assert env.chef.request("GET", "/nodes/%s" % instance, missing_ok=True) is None
    assert env.chef.request("GET", "/clients/%s" % instance, missing_ok=True) is None
    assert env.s3.list_object_versions(Bucket=KEY_BUCKET, Prefix="claims/asg-gate/%s.claim" % instance).get("Versions", []) == []
    assert env.s3.list_objects_v2(Bucket=KEY_BUCKET, Prefix=record).get("KeyCount") == 0
    poll(lambda: env.instance(instance)["State"]["Name"] == "terminated")


def test_scale_out_of_two_first_fails_is_abandoned_shredded_and_replaced(gate_lab):
    """The first instance's scan finds a critical: contained, ABANDON, terminated through the
    terminating hook (key shredded, role and node gone); the other one and the replacement serve."""
    env = gate_lab
    name = "gate-scale-out"
    failing, passing = env.group(name, [dict(LifecycleHookName="launch", LifecycleTransition=LAUNCHING, HeartbeatTimeout=300,
                                             DefaultResult="ABANDON"),
                                        dict(LifecycleHookName="shred", LifecycleTransition=TERMINATING, HeartbeatTimeout=300)], 2)
    failing_target = env.scan_as(failing, {"report": "dojo_nessus_with_cvssv3.nessus", "scan_seconds": 1})
    env.scan_as(passing, {"scan_seconds": 1})
    env.play_instance(failing)
    env.play_instance(passing)

    result, summary = env.gate(name)
    # abandoning is the gate doing its job: the run succeeds
    assert result.rc == 0 and _summary(summary) == {failing: "abandoned", passing: "production"}, result.stdout[-5000:]
    assert len(scans_of(env.lab, failing_target)) == 1
    # contained before it was abandoned: the isolation group, its role shrunk, the reason on it
    terminating = poll(lambda: env.states(name).get(failing) == "Terminating:Wait")
    assert terminating
    assert env.groups_of(failing) == ["cloudefigo-isolation"]
    tags = env.tags(failing)
    assert tags["SecurityStatus"] == "remediation" and "scan" in tags["SecurityReason"], tags
    assert [e["result"] for e in env.completions(failing)] == ["ABANDON"]
    replacement, = poll(lambda: [i for i, s in env.states(name).items() if s == "Pending:Wait"] or None)
    assert replacement not in (failing, passing)
    assert len(env.key_versions(failing)) == 1  # shredded by the terminating hook, not before

    env.scan_as(replacement, {"scan_seconds": 1})
    env.play_instance(replacement)
    result, summary = env.gate(name)
    assert result.rc == 0, result.stdout[-5000:]
    assert _summary(summary) == {failing: "cleaned_up", replacement: "production"}
    poll(lambda: env.instance(failing)["State"]["Name"] == "terminated")
    assert env.key_versions(failing) == []
    assert env.role(failing) is None
    assert env.chef.request("GET", "/nodes/%s" % failing, missing_ok=True) is None
    poll(lambda: env.states(name) == {passing: "InService", replacement: "InService"})
    for instance in (passing, replacement):
        assert env.groups_of(instance) == ["cloudefigo-production"]
        assert env.tags(instance)["SecurityStatus"] == "production"
        assert len(env.key_versions(instance)) == 1


def test_heartbeats_outlast_a_hook_timeout_shorter_than_the_scan_and_forged_tags_change_nothing(gate_lab):
    """A scan longer than the hook's heartbeat timeout (DefaultResult ABANDON) still ends in CONTINUE;
    an instance that only forges its tags (progress done, SecurityStatus=production from the launch
    template) but has no Chef node is contained and abandoned without a scan, and so is one whose
    Chef node a rogue client made before the instance had credentials; a profile the launch
    template gave is replaced by the instance's own (ReplaceIamInstanceProfileAssociation)."""
    env = gate_lab
    name = "gate-heartbeat"
    timeout = 30  # AWS's smallest heartbeat timeout
    # a launch template that gives a profile: the gate replaces the association with the instance's own
    env.iam.create_role(RoleName="template-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    env.iam.create_instance_profile(InstanceProfileName="template-profile")
    env.iam.add_role_to_instance_profile(InstanceProfileName="template-profile", RoleName="template-role")
    slow, forged, rogue = env.group(name, [dict(LifecycleHookName="launch", LifecycleTransition=LAUNCHING, HeartbeatTimeout=timeout,
                                                DefaultResult="ABANDON")], 3, profile="template-profile")
    for instance in (slow, forged, rogue):
        # moto's Auto Scaling leaves the template's profile out: associated here, as AWS would at launch
        if "IamInstanceProfile" not in env.instance(instance):
            env.ec2.associate_iam_instance_profile(InstanceId=instance, IamInstanceProfile={"Name": "template-profile"})
    assert env.instance(slow)["IamInstanceProfile"]["Arn"].endswith("/template-profile")
    slow_target = env.scan_as(slow, {"scan_seconds": timeout + 10})
    forged_target = env.scan_as(forged, {"scan_seconds": 1})
    rogue_target = env.scan_as(rogue, {"scan_seconds": 1})
    env.play_instance(slow)
    # someone who can write tags: progress done, SecurityStatus=production (from the template), no Chef node
    env.ec2.create_tags(Resources=[forged], Tags=[{"Key": "cloudefigo:progress", "Value": "done"}])
    assert env.tags(forged)["SecurityStatus"] == "production"
    # a rogue Chef client: a converged node of the instance's name, with the marks the gate would write,
    # made before the instance has credentials; and the forged tags
    env.register_node(rogue)
    env.ec2.create_tags(Resources=[rogue], Tags=[{"Key": "cloudefigo:progress", "Value": "done"}])

    started = time.monotonic()
    result, summary = env.gate(name)
    assert time.monotonic() - started > timeout
    assert _summary(summary) == {slow: "production", forged: "abandoned", rogue: "abandoned"}, result.stdout[-5000:]
    assert [(e["result"], e["cause"]) for e in env.completions(slow)][0][0] == "CONTINUE"
    assert all(e["cause"] != "HeartbeatTimeout" for e in env.completions(slow))
    assert len(env.requests("RecordLifecycleActionHeartbeat")) >= 2
    poll(lambda: env.states(name).get(slow) == "InService")
    # the association is what gives credentials (moto's ReplaceIamInstanceProfileAssociation updates it,
    # not the IamInstanceProfile DescribeInstances shows: a moto gap)
    associations = env.ec2.describe_iam_instance_profile_associations(Filters=[{"Name": "instance-id", "Values": [slow]}])
    assert [a["IamInstanceProfile"]["Arn"].split("/")[-1] for a in associations["IamInstanceProfileAssociations"]
            if a["State"] in ("associating", "associated")] == ["cloudefigo-" + slow]
    assert env.requests("ReplaceIamInstanceProfileAssociation")

    assert scans_of(env.lab, forged_target) == [] and len(scans_of(env.lab, slow_target)) == 1
    assert [e["result"] for e in env.completions(forged)] == ["ABANDON"]
    assert "Chef node" in [i for i in summary["instances"] if i["instance_id"] == forged][0]["reason"]
    poll(lambda: env.instance(forged)["State"]["Name"] == "terminated")
    assert scans_of(env.lab, rogue_target) == [] and [e["result"] for e in env.completions(rogue)] == ["ABANDON"]
    assert "exists before" in [i for i in summary["instances"] if i["instance_id"] == rogue][0]["reason"]
