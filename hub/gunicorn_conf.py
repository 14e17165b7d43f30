"""gunicorn settings that the hub needs whatever the command line says."""
from prometheus_client import multiprocess


def child_exit(server, worker):  # gunicorn hook: drop a dead worker's live gauges
    multiprocess.mark_process_dead(worker.pid)
