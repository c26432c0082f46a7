"""One lifecycle for every background job (training runs, predictions, model exports, and the kinds to come).

``models.Job`` is the abstract row (status, attempts, worker, heartbeat, progress, error, enqueue stamps,
timestamps); ``service`` owns every transition (claim, beat, report, finish_if_ours, fail, cancel,
recover_stale, recover_lost) once, for any registered ``JobKind``; ``tasks`` holds the one periodic
recovery task for all kinds. This package imports no app: the apps register their kinds with it.
"""
