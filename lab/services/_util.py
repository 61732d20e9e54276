"""Helpers shared by the lab's services."""
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request


def free_port():
    """A port free on 127.0.0.1 right now (the loopback is shared: never a fixed port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(cmd, log_path, env=None, cwd=None, user=None):
    """Start a long-running process in its own session, detached from the lab CLI."""
    log = open(log_path, "ab")
    if user is not None and os.geteuid() == 0 and user != "root":
        cmd = ["runuser", "-u", user, "--"] + list(cmd)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, cwd=cwd, start_new_session=True)
    log.close()
    return proc


def wait_for(check, timeout, what, proc=None, log_path=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s; log: %s\n%s" % (what, proc.returncode, log_path, tail(log_path)))
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - anything means "not yet"
            pass
        time.sleep(0.1)
    raise RuntimeError("%s not ready after %ss; log: %s\n%s" % (what, timeout, log_path, tail(log_path)))


def http_ok(url, context=None):
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500


def tcp_open(port, host="127.0.0.1"):
    with socket.create_connection((host, port), timeout=1):
        return True


def tail(path, lines=20):
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as handle:
        return b"".join(handle.readlines()[-lines:]).decode("utf-8", "replace")


def stop_pid(pid, timeout=10):
    """Stop a process group started by spawn(): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
