"""The torch-free job contract shared by the gateway and the workers.

Job records and their store, blob storage, options and outcomes of each job kind, the
lease runner, webhook signing. Nothing here imports torch, ``workers``, ``models`` or
``service`` (see the import contracts in ``pyproject.toml``).
"""
