"""The torch-free job contract shared by the gateway and the workers.

Job kinds and their handler protocol (``kinds``), options and item outcomes
(``options``), job records and their store (``records``, ``store``), blob storage
(``storage``), the per-process ``context``, the lease runner (``runner``), the public job
view (``views``), webhook signing and delivery (``webhooks``), Celery queue and task names
(``queues``) and typed reports (``reports``). Nothing here imports torch, ``workers``,
``models``, ``service``, celery or fastapi (see the import contracts in ``pyproject.toml``).
"""
