"""The distributed mode (extra ``distributed``): API nodes and workers on Celery + Redis, artifacts on S3.

- API nodes: ``abstractvision serve --broker redis://... --store s3://...`` or
  ``abstractvision.server.create_app(broker=..., store=...)``; they load no engine and answer
  every route for any job (:mod:`.api`).
- Workers: ``abstractvision worker --broker ... --store ... --model ...`` or
  :class:`~abstractvision.distributed.worker.Worker`; one process per GPU (:mod:`.worker`).
- Shared state in Redis (:mod:`.redis_state`, layout in :mod:`.keys`), the queue on Celery
  (:mod:`.celery_app`), artifacts in any fsspec store (:mod:`abstractvision.stores`).

Nothing here is imported by ``import abstractvision``; see ``docs/scale-out.md``.
"""
