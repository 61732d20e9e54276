"""AWS: moto in server mode on 127.0.0.1 and a free port."""
import os

from ._util import free_port, http_ok, spawn, wait_for

NAME = "moto"


def start(ctx):
    port = free_port()
    log = os.path.join(ctx.state_dir, "moto.log")
    env = dict(os.environ, MOTO_ALLOW_NONEXISTENT_REGION="false")
    proc = spawn([ctx.venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)], log, env=env)
    url = "http://127.0.0.1:%d" % port
    wait_for(lambda: http_ok(url + "/moto-api/"), 30, "moto_server", proc, log)
    return {
        "pids": [proc.pid],
        "env": {
            "LAB_AWS_ENDPOINT": url,
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            # what the VM sees of the host's loopback (qemu user networking)
            "LAB_AWS_ENDPOINT_FROM_VM": "http://10.0.2.2:%d" % port,
        },
    }
