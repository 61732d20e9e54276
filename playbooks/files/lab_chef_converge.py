"""Lab only: report a Chef converge for a node, as chef-client would at the end of its run.

No chef-client exists for the lab's VM, so the dummy package only records that it ran; this saves
the node's automatic attributes (ohai_time, ec2.instance_id, addresses) through the Chef API with
the collection's own signed client.  Usage: lab_chef_converge.py URL USER KEY NODE INSTANCE_ID IP
"""
import sys
import time

from ansible_collections.cloudefigo.core.plugins.module_utils._chef import ChefClient


def main():
    url, user, key_path, node, instance_id, address = sys.argv[1:7]
    with open(key_path, "rb") as handle:
        client = ChefClient(url, user, handle.read())
    body = client.request("GET", "/nodes/%s" % node)
    body.setdefault("automatic", {})
    body["automatic"].update({
        "ohai_time": time.time(),
        "ec2": {"instance_id": instance_id, "local_ipv4": address},
        "ipaddress": address,
        "hostname": node,
        "fqdn": node,
    })
    client.request("PUT", "/nodes/%s" % node, data=body)
    print("converged %s (%s)" % (node, instance_id))


if __name__ == "__main__":
    main()
