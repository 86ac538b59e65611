"""The collector's storage, on SQLite (the default: one file) or PostgreSQL (a shared server).

- :mod:`~readme_metrics.collector.store.records`: validation of log objects, :class:`Record`.
- :mod:`~readme_metrics.collector.store.filters`: :class:`Filters`, as SQL.
- :mod:`~readme_metrics.collector.store.core`: :class:`Storage` and :func:`open_storage`.
- :mod:`~readme_metrics.collector.store.queries`: the dashboard's figures, in SQL.
- :mod:`~readme_metrics.collector.store.schema`: the tables, their versions and migrations.
- :mod:`~readme_metrics.collector.store.dialect`: what differs between the engines' SQL.
- :mod:`~readme_metrics.collector.store.engine`, ``sqlite``, ``postgres``: the engines.

:mod:`readme_metrics.collector.storage` gathers the public names.
"""
