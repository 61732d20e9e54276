"""Helpers for the Event-Driven Ansible tests: a lifecycle notification in AWS's format, and
ansible-rulebook running cloudefigo.core.asg_gate against the lab (started, killed, stopped)."""
import json
import os
import signal
import subprocess
import time
import uuid

from _lab import ROOT, ansible_env

VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def notification(instance_id, transition="autoscaling:EC2_INSTANCE_LAUNCHING", **changes):
    """A lifecycle notification as Auto Scaling sends it to an SQS target."""
    doc = {
        "Origin": "EC2", "Destination": "AutoScalingGroup", "Service": "AWS Auto Scaling",
        "Time": "2026-11-29T23:00:00.000Z", "RequestId": str(uuid.uuid4()),
        "LifecycleActionToken": str(uuid.uuid4()), "AccountId": "123456789012",
        "AutoScalingGroupName": "cloudefigo-web", "LifecycleHookName": "cloudefigo-launch",
        "EC2InstanceId": instance_id, "LifecycleTransition": transition, "NotificationMetadata": "lab",
    }
    doc.update(changes)
    return json.dumps(doc)


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def descendants(pid):
    """Every process below pid (ansible-runner starts ansible-playbook in a session of its own)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Rulebook:
    """ansible-rulebook running cloudefigo.core.asg_gate on one queue.

    `playbook` is the gate it runs; `inventory_vars` are the inventory's `all` variables (the
    gate's settings, as under a scheduled run); the source reads the queue at `endpoint`.
    """

    def __init__(self, lab, workdir, queue_url, playbook, inventory_vars, endpoint, visibility):
        self.lab = lab
        self.workdir = workdir
        self.queue_url = queue_url
        self.proc = None
        self.log_path = None
        self.starts = 0
        inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local"}}, "vars": inventory_vars}}
        self.inventory = os.path.join(workdir, "inventory.yml")
        with open(self.inventory, "w") as handle:
            json.dump(inventory, handle)
        self.vars = os.path.join(workdir, "vars.yml")
        with open(self.vars, "w") as handle:
            json.dump({"asg_eda_queue_url": queue_url, "asg_eda_region": "us-east-1",
                       "asg_eda_endpoint_url": endpoint, "asg_eda_playbook": playbook,
                       "asg_eda_visibility_timeout": visibility, "asg_eda_wait_time_seconds": 1,
                       "asg_eda_retry_delay": 1}, handle)

    def start(self):
        self.starts += 1
        self.log_path = os.path.join(self.workdir, "rulebook-%d.log" % self.starts)
        env = ansible_env(self.lab, {"PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "")})
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [os.path.join(VENV_BIN, "ansible-rulebook"), "-r", "cloudefigo.core.asg_gate",
                 "--vars", self.vars, "-i", self.inventory, "-v"],
                cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: "asg_lifecycle: reading" in self.log() or self.proc.poll() is not None, 60,
                   "the rulebook to read the queue")
        assert self.proc.poll() is None, self.log()

    def kill(self):
        """SIGKILL the rulebook and everything it started: a host that died."""
        pids = descendants(self.proc.pid)
        self.proc.kill()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            pids = descendants(self.proc.pid)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def idle(self):
        """Every event's playbook run has ended (one PLAY RECAP per event since the last start)."""
        log = self.log()
        return log.count("asg_lifecycle: autoscaling:EC2_INSTANCE_") == log.count("PLAY RECAP")

    def log(self):
        with open(self.log_path, errors="replace") as handle:
            return handle.read()


def queue_counts(sqs, url):
    """(visible, in flight) messages of the queue."""
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])
