"""Threshold alerts on session metrics: rules, evaluation, notifications (email, webhooks).

`models` holds the rows, `sources` reads metric values (rollups, the store, JobRun),
`evaluate` decides firing/resolved, `notify` sends email and signed webhooks.
"""
