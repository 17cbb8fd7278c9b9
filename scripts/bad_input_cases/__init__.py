"""The classes of bad input that ``scripts/bad_inputs.py`` sends, and what sends them.

``core``: answers (``Got``), cases (``Case``), results and limits. ``inputs``: the bad files,
made in memory. ``probe``: the target gateway, its requests (raw-socket uploads included)
and the jobs a run creates. One module per group of classes, each with its ``*_cases(p)``
builders: ``auth``, ``uploads`` (files and sizes), ``archives`` (zips of photos),
``options`` (form fields, callback URLs, idempotency keys), ``scans`` (backdoor scans and
augmentations), ``jobs`` and ``captcha``.
"""
