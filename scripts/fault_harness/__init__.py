"""The pieces ``scripts/fault_injection.py`` runs: the stack, its traffic, the faults, the report.

``stack``: redis-server, the gateway and the workers as process groups in a temporary folder.
``traffic``: the webhook receivers, the submitting clients and job polling. ``faults``: the
gateway restart, worker SIGKILL and Redis restart, and the 1 GiB chunked upload. ``report``:
the counts, result checks and webhook latency, and their Markdown table.
"""
