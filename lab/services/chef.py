"""Chef: Debian's goiardi with signed-request authentication (-A)."""
import os
import shutil

from ._util import free_port, spawn, tcp_open, wait_for

NAME = "chef"


def start(ctx):
    binary = shutil.which("goiardi")
    if not binary:
        raise RuntimeError("goiardi is not installed: run 'make bootstrap' (apt-get install goiardi)")
    conf = os.path.join(ctx.state_dir, "chef")
    os.makedirs(conf, exist_ok=True)
    for stale in ("admin.pem", "chef-validator.pem", "chef-webui.pem"):
        if os.path.exists(os.path.join(conf, stale)):
            os.remove(os.path.join(conf, stale))
    port = free_port()
    log = os.path.join(ctx.state_dir, "chef.log")
    proc = spawn([binary, "-I", "127.0.0.1", "-P", str(port), "-H", "127.0.0.1", "-A",
                  "--conf-root=%s" % conf], log)
    admin = os.path.join(conf, "admin.pem")
    wait_for(lambda: tcp_open(port) and os.path.getsize(admin) > 0, 30, "goiardi", proc, log)
    return {
        "pids": [proc.pid],
        "env": {
            "LAB_CHEF_URL": "http://127.0.0.1:%d" % port,
            "LAB_CHEF_URL_FROM_VM": "http://10.0.2.2:%d" % port,
            "LAB_CHEF_USER": "admin",
            "LAB_CHEF_KEY": admin,
            "LAB_CHEF_VALIDATOR_NAME": "chef-validator",
            "LAB_CHEF_VALIDATOR_KEY": os.path.join(conf, "chef-validator.pem"),
        },
    }
