"""The alert evaluation job: one of jobs.JOBS ("alerts"), run every minute by beat through
the task sessions_app.tasks generates for it; thin over `evaluate.evaluate_rules`."""

from sessions_app import jobs


def run_evaluation() -> dict:
    """Evaluate the rules now under the job's lock; a summary of its JobRun."""
    return jobs.run_named_job("alerts")
