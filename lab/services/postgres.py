"""PostgreSQL: a throwaway cluster of Debian's server (initdb + pg_ctl), data under the state dir."""
import glob
import os
import pwd
import shutil
import subprocess

from ._util import free_port

NAME = "postgres"


def _bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("PostgreSQL server not installed: run 'make bootstrap' (apt-get install postgresql)")
    return os.path.dirname(found[-1])


def _run_as(user, cmd):
    if user and os.geteuid() == 0:
        cmd = ["runuser", "-u", user, "--"] + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def start(ctx):
    bindir = _bindir()
    base = os.path.join(ctx.state_dir, "pg")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    user = None
    if os.geteuid() == 0:  # the server refuses to run as root: hand the dir to postgres
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        os.chmod(ctx.state_dir, 0o755)
    data = os.path.join(base, "data")
    _run_as(user, [os.path.join(bindir, "initdb"), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                   "--no-sync", "-D", data])
    port = free_port()
    opts = "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" % (port, base)
    _run_as(user, [os.path.join(bindir, "pg_ctl"), "-D", data, "-o", opts, "-l",
                   os.path.join(base, "server.log"), "-w", "-t", "60", "start"])
    _run_as(user, [os.path.join(bindir, "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                   "cloudefigo"])
    with open(os.path.join(data, "postmaster.pid")) as handle:
        pid = int(handle.readline())
    return {
        "pids": [],
        "pg_pid": pid,
        "bindir": bindir,
        "data": data,
        "user": user,
        "env": {
            "LAB_PG_HOST": "127.0.0.1",
            "LAB_PG_PORT": str(port),
            "LAB_PG_USER": "postgres",
            "LAB_PG_DB": "cloudefigo",
            "LAB_PG_DSN": "postgresql://postgres@127.0.0.1:%d/cloudefigo" % port,
        },
    }


def stop(ctx, info):
    try:
        _run_as(info.get("user"), [os.path.join(info["bindir"], "pg_ctl"), "-D", info["data"], "-m", "immediate",
                                   "-w", "stop"])
    except subprocess.CalledProcessError:
        from ._util import stop_pid
        stop_pid(info["pg_pid"])
