"""Services of the lab. Each module defines NAME, start(ctx) -> info and optionally stop(ctx, info).

``info`` is a JSON-able dict: ``pids`` (what ``down`` stops), ``env`` (LAB_* variables written to
lab.env / lab_vars.yml) and anything the service needs to stop itself.
"""
