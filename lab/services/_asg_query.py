"""Query API shapes of the Auto Scaling lifecycle stand-in (private to lab/services/asg_lifecycle.py).

Parsing of Query API parameters, AWS-shaped XML answers and errors, and the ``LifecycleState``
overlay of moto's DescribeAutoScalingGroups / DescribeAutoScalingInstances answers.
"""
import datetime
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
ET.register_namespace("", NS)


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class LifecycleError(Exception):
    """An error AWS would answer (code, message, HTTP status)."""

    def __init__(self, message, code="ValidationError", status=400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def answer(action, inner=""):
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<{a}Response xmlns="{ns}"><{a}Result>{inner}</{a}Result>'
            "<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{a}Response>"
            .format(a=action, ns=NS, inner=inner, rid=uuid.uuid4()))
    return 200, body


def answer_empty(action):
    """The answer of an operation without output: only ResponseMetadata (as AWS sends it)."""
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<{a}Response xmlns="{ns}"><ResponseMetadata>'
            "<RequestId>{rid}</RequestId></ResponseMetadata></{a}Response>".format(a=action, ns=NS, rid=uuid.uuid4()))
    return 200, body


def error(failure):
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="{ns}"><Error><Type>Sender</Type>'
            "<Code>{code}</Code><Message>{msg}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"
            .format(ns=NS, code=escape(failure.code), msg=escape(failure.message), rid=uuid.uuid4()))
    return failure.status, body


def params(request):
    """The Query API parameters of a request (query string and form body), first value of each."""
    found = {k: v[0] for k, v in request.params.items()}
    if request.body and "x-www-form-urlencoded" in request.headers.get("content-type", ""):
        form = urllib.parse.parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        found.update({k: v[0] for k, v in form.items()})
    return found


def members(given, prefix):
    """Query API list ``Prefix.member.N.Field`` -> [{"Field": value}, ...] (ordered by N)."""
    items = {}
    for key, value in given.items():
        if not key.startswith(prefix + ".member."):
            continue
        rest = key[len(prefix) + len(".member."):]
        number, field = (rest.split(".", 1) + [""])[:2]
        if number.isdigit():
            items.setdefault(int(number), {})[field] = value
    return [items[n] for n in sorted(items)]


def int_param(given, name):
    value = given.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise LifecycleError("Value '%s' at '%s' failed to satisfy constraint: Member must be an integer"
                             % (value, name[0].lower() + name[1:]))


def overlay_describe(action, body, instances, wanted=None):
    """moto's Describe answer with the stand-in's states; instances in Terminating:* added back."""
    root = ET.fromstring(body)
    ns = "{%s}" % NS
    if action == "DescribeAutoScalingGroups":
        for group in root.findall(".//%sAutoScalingGroups/%smember" % (ns, ns)):
            container = group.find(ns + "Instances")
            if container is None:
                container = ET.SubElement(group, ns + "Instances")
            _overlay_members(container, instances, group.findtext(ns + "AutoScalingGroupName"), with_group=False)
    else:
        container = root.find(".//%sAutoScalingInstances" % ns)
        if container is not None:
            _overlay_members(container, instances, None, with_group=True, wanted=wanted)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode").encode()


def _overlay_members(container, instances, group, with_group, wanted=None):
    seen = set()
    for member in container.findall("{%s}member" % NS):
        instance_id = member.findtext("{%s}InstanceId" % NS)
        seen.add(instance_id)
        record = instances.get(instance_id)
        state = member.find("{%s}LifecycleState" % NS)
        if record is not None and state is not None:
            state.text = record["state"]
    for instance_id, record in sorted(instances.items()):
        if instance_id in seen or not record["state"].startswith("Terminating"):
            continue
        if (group is not None and record["group"] != group) or (wanted and instance_id not in wanted):
            continue
        container.append(_member_element(instance_id, record, with_group))


def _member_element(instance_id, record, with_group):
    info = record.get("member") or {}
    el = ET.Element("{%s}member" % NS)

    def add(parent, tag, text):
        child = ET.SubElement(parent, "{%s}%s" % (NS, tag))
        child.text = text
        return child

    add(el, "InstanceId", instance_id)
    if with_group:
        add(el, "AutoScalingGroupName", record["group"])
    add(el, "InstanceType", info.get("InstanceType", "t2.micro"))
    add(el, "AvailabilityZone", info.get("AvailabilityZone", ""))
    add(el, "LifecycleState", record["state"])
    add(el, "HealthStatus", info.get("HealthStatus", "Healthy"))
    if info.get("LaunchTemplate"):
        template = ET.SubElement(el, "{%s}LaunchTemplate" % NS)
        for key in ("LaunchTemplateId", "LaunchTemplateName", "Version"):
            if info["LaunchTemplate"].get(key):
                add(template, key, info["LaunchTemplate"][key])
    if info.get("LaunchConfigurationName"):
        add(el, "LaunchConfigurationName", info["LaunchConfigurationName"])
    add(el, "ProtectedFromScaleIn", "true" if info.get("ProtectedFromScaleIn") else "false")
    return el
