"""lab: start and stop the local stand-in world on 127.0.0.1 and free ports.

    lab/lab up [--vm] [--only moto,chef]   start what is not running yet; write lab.env + lab_vars.yml
    lab/lab down                           stop exactly what `up` started (by PID)
    lab/lab status                         what runs, and where
    lab/lab reset                          empty moto (POST /moto-api/reset), forget aws_proxy's records

The state dir is $LAB_STATE_DIR or lab/.state; several labs can run side by side with different
state dirs (every port is picked at run time).
"""
import argparse
import importlib
import json
import os
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from services._util import stop_pid  # noqa: E402

DEFAULT_SERVICES = ("moto", "aws_proxy", "chef", "postgres", "nessus")
OPTIONAL_SERVICES = ("vm",)


class Context:
    def __init__(self, state_dir):
        self.root = ROOT
        self.state_dir = state_dir
        self.env = {}

    @staticmethod
    def venv_bin(name):
        return os.path.join(ROOT, ".venv", "bin", name)


def state_dir():
    path = os.path.abspath(os.environ.get("LAB_STATE_DIR") or os.path.join(HERE, ".state"))
    os.makedirs(path, exist_ok=True)
    return path


def load_state(path):
    try:
        with open(os.path.join(path, "state.json")) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {"services": {}}


def save_state(path, state):
    tmp = os.path.join(path, "state.json.tmp")
    with open(tmp, "w") as handle:
        json.dump(state, handle, indent=2)
    os.replace(tmp, os.path.join(path, "state.json"))
    env = {"LAB_STATE_DIR": path, "LAB_ROOT": ROOT}
    for name in state["order"] if "order" in state else state["services"]:
        env.update(state["services"][name]["env"])
    with open(os.path.join(path, "lab.env"), "w") as handle:
        for key in sorted(env):
            handle.write("export %s=%s\n" % (key, _shell_quote(env[key])))
    with open(os.path.join(path, "lab_vars.yml"), "w") as handle:
        handle.write("---\n# written by lab/lab up; read by playbooks and tests\n")
        for key in sorted(env):
            handle.write("%s: %s\n" % (key.lower(), json.dumps(env[key])))
    with open(os.path.join(path, "lab.json"), "w") as handle:
        json.dump(env, handle, indent=2)


def _shell_quote(value):
    return "'" + str(value).replace("'", "'\\''") + "'"


def alive(info):
    pids = list(info.get("pids", []))
    if info.get("pg_pid"):
        pids.append(info["pg_pid"])
    if not pids:
        return False
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    return True


def available(name):
    return os.path.exists(os.path.join(HERE, "services", name + ".py"))


def cmd_up(args):
    path = state_dir()
    state = load_state(path)
    wanted = [s for s in DEFAULT_SERVICES if available(s)]
    if args.vm:
        wanted.append("vm")
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    ctx = Context(path)
    order = state.setdefault("order", [])
    for name in order:
        ctx.env.update(state["services"][name]["env"])
    for name in wanted:
        info = state["services"].get(name)
        if info and alive(info):
            print("lab: %-8s already up" % name)
            continue
        if info:
            _stop(ctx, name, info)
        module = importlib.import_module("services." + name)
        started = time.monotonic()
        try:
            info = module.start(ctx)
        except Exception as exc:  # noqa: BLE001 - report, stop what started, exit non-zero
            print("lab: %s failed to start: %s" % (name, exc), file=sys.stderr)
            save_state(path, state)
            return 1
        state["services"][name] = info
        if name not in order:
            order.append(name)
        ctx.env.update(info["env"])
        save_state(path, state)
        print("lab: %-8s up in %.1fs" % (name, time.monotonic() - started))
    save_state(path, state)
    print("lab: env file %s" % os.path.join(path, "lab.env"))
    return 0


def _stop(ctx, name, info):
    try:
        module = importlib.import_module("services." + name)
    except ImportError:
        module = None
    if module is not None and hasattr(module, "stop"):
        module.stop(ctx, info)
    for pid in info.get("pids", []):
        stop_pid(pid)


def cmd_down(args):
    path = state_dir()
    state = load_state(path)
    ctx = Context(path)
    for name in reversed(state.get("order", list(state["services"]))):
        info = state["services"].get(name)
        if info is None:
            continue
        _stop(ctx, name, info)
        print("lab: %-8s down" % name)
    for leftover in ("state.json", "lab.env", "lab_vars.yml", "lab.json"):
        try:
            os.remove(os.path.join(path, leftover))
        except FileNotFoundError:
            pass
    return 0


def cmd_status(args):
    path = state_dir()
    state = load_state(path)
    if not state["services"]:
        print("lab: nothing running (state dir %s)" % path)
        return 1
    code = 0
    for name in state.get("order", state["services"]):
        info = state["services"][name]
        up = alive(info)
        code |= 0 if up else 1
        detail = ", ".join("%s=%s" % kv for kv in sorted(info["env"].items()) if kv[0].startswith("LAB_"))
        print("%-8s %-4s %s" % (name, "up" if up else "DOWN", detail))
    return code


def cmd_reset(args):
    state = load_state(state_dir())
    url = state["services"]["moto"]["env"]["LAB_AWS_ENDPOINT"] + "/moto-api/reset"
    urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=30).read()
    proxy = state["services"].get("aws_proxy")
    if proxy:  # forget the recorded requests too
        url = proxy["env"]["LAB_AWS_PROXY_ENDPOINT"] + "/_lab/proxy/reset"
        urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=30).read()
    return 0


def main():
    parser = argparse.ArgumentParser(prog="lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up")
    up.add_argument("--vm", action="store_true", help="also boot the qemu stand-in instance")
    up.add_argument("--only", help="comma-separated services to start (default: all but vm)")
    sub.add_parser("down")
    sub.add_parser("status")
    sub.add_parser("reset")
    args = parser.parse_args()
    return {"up": cmd_up, "down": cmd_down, "status": cmd_status, "reset": cmd_reset}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
