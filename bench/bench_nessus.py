"""Nessus report evaluation: throughput against a raw expat scan, and peak RSS on a big report.

    .venv/bin/python bench/bench_nessus.py
    NESSUS_BENCH_MB=50 .venv/bin/python bench/bench_nessus.py     # quick run

Builds reports in a temp dir (deleted afterwards) by repeating the ReportHosts of a real sample
(tests/data/nessus/pytenable_example.nessus, 230 items a host, 93 at medium or above):
- throughput: NESSUS_BENCH_THROUGHPUT_MB (default 64) MB, best of 3, evaluation vs a bare expat
  pass counting ReportItem (same chunk size), both in this process, same run.
  Goal: evaluation >= 0.7x the expat rate.
- memory: NESSUS_BENCH_MB (default 500) MB, evaluated in a child process that reports its own
  peak RSS (ru_maxrss); the bare expat pass likewise, for reference. Goal: peak RSS <= 80 MB.
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import xml.parsers.expat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
SAMPLES = os.environ.get("LAB_NESSUS_SAMPLES") or os.path.join(ROOT, "tests", "data", "nessus")
SAMPLE = os.path.join(SAMPLES, "pytenable_example.nessus")
CHUNK = 1 << 20
MB = 1 << 20


def build_report(path, size_mb):
    """Header + the sample's ReportHosts repeated (host renamed each time) + footer, ~size_mb."""
    with open(SAMPLE, "rb") as handle:
        data = handle.read()
    start = data.index(b"<ReportHost ")
    end = data.rindex(b"</ReportHost>") + len(b"</ReportHost>")
    header, body, footer = data[:start], data[start:end], data[end:]
    name_at = body.index(b'name="') + len(b'name="')
    name_end = body.index(b'"', name_at)
    target = size_mb * MB
    written = 0
    copies = 0
    with open(path, "wb") as out:
        out.write(header)
        written += len(header)
        while written + len(body) + len(footer) <= target or copies == 0:
            chunk = body[:name_at] + b"host-%d" % copies + body[name_end:]
            out.write(chunk)
            written += len(chunk)
            copies += 1
        out.write(footer)
        written += len(footer)
    return written, copies


def expat_scan(path):
    """The baseline: a bare expat pass that only counts ReportItem elements."""
    count = [0]

    def start(name, attrs):
        if name == "ReportItem":
            count[0] += 1

    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler = start
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                break
            parser.Parse(chunk, False)
    parser.Parse(b"", True)
    return count[0]


def evaluate(path):
    from ansible_collections.cloudefigo.core.plugins.module_utils._nessus.evaluation import evaluate_file
    result = evaluate_file(path, fail_on="medium")
    return result["counts"]["total"]


def best_of(func, path, runs=3):
    best = None
    items = None
    for _run in range(runs):
        started = time.perf_counter()
        items = func(path)
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    return best, items


def child(kind, path):
    """Run in a subprocess: one pass, then print items, seconds and own peak RSS (KiB)."""
    started = time.perf_counter()
    items = expat_scan(path) if kind == "expat" else evaluate(path)
    elapsed = time.perf_counter() - started
    print(json.dumps({"items": items, "seconds": elapsed,
                      "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def run_child(kind, path):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", kind, path],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return 0
    if not os.path.exists(SAMPLE):
        print("sample not found: %s" % SAMPLE)
        return 1
    big_mb = int(os.environ.get("NESSUS_BENCH_MB", "500"))
    tp_mb = int(os.environ.get("NESSUS_BENCH_THROUGHPUT_MB", str(min(64, big_mb))))
    tmp = tempfile.mkdtemp(prefix="bench-nessus-")
    status = 0
    try:
        small = os.path.join(tmp, "throughput.nessus")
        size, copies = build_report(small, tp_mb)
        expat_s, expat_items = best_of(expat_scan, small)
        eval_s, eval_items = best_of(evaluate, small)
        assert expat_items == eval_items, (expat_items, eval_items)
        ratio = expat_s / eval_s
        print("throughput on %.0f MB (%d hosts, %d ReportItems), best of 3:" % (size / MB, copies, eval_items))
        print("  raw expat scan   %7.1f MB/s  %9.0f items/s" % (size / MB / expat_s, eval_items / expat_s))
        print("  evaluation       %7.1f MB/s  %9.0f items/s" % (size / MB / eval_s, eval_items / eval_s))
        ok = ratio >= 0.7
        status |= 0 if ok else 1
        print("  ratio evaluation/expat = %.2fx (goal >= 0.70x) %s" % (ratio, "OK" if ok else "MISSED"))
        os.remove(small)

        big = os.path.join(tmp, "big.nessus")
        size, copies = build_report(big, big_mb)
        base = run_child("expat", big)
        ours = run_child("evaluate", big)
        assert base["items"] == ours["items"]
        rss_mb = ours["maxrss_kib"] / 1024.0
        ok = rss_mb <= 80
        status |= 0 if ok else 1
        print("peak RSS on %.0f MB (%d hosts, %d ReportItems), child processes:" % (size / MB, copies, ours["items"]))
        print("  raw expat scan   %6.1f MB RSS  %6.1f s" % (base["maxrss_kib"] / 1024.0, base["seconds"]))
        print("  evaluation       %6.1f MB RSS  %6.1f s  (rate ratio %.2fx)" % (
            rss_mb, ours["seconds"], base["seconds"] / ours["seconds"]))
        print("  peak RSS %.1f MB (goal <= 80 MB) %s" % (rss_mb, "OK" if ok else "MISSED"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
