"""The alert evaluation job (run every minute by beat), thin over `evaluate.evaluate_rules`."""

from celery import shared_task

from sessions_app import jobs
from sessions_app.alerts.evaluate import evaluate_rules
from sessions_app.alerts.sources import EVALUATE_ALERTS


def run_evaluation() -> dict:
    """Evaluate the rules now under the job's lock; a summary of its JobRun."""
    run = jobs.run_job(EVALUATE_ALERTS, evaluate_rules)
    return {"job": run.job, "outcome": run.outcome, "counts": run.counts, "error": run.error}


@shared_task
def evaluate_alerts() -> dict:
    return run_evaluation()
