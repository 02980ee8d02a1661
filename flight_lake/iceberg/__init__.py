"""Each dataset is also an Apache Iceberg table in the same storage (issue 13, item 2).

``field_ids`` numbers the columns written into every Parquet object; ``layout`` says where
the tables live (the Hadoop catalog's file-system layout under ``_iceberg/``);
``snapshots`` turns one manifest version into one Iceberg commit with pyiceberg; ``tables``
keeps the tables in step with the manifests (on commit and ``flight-lake iceberg sync``).
The manifests stay the source of truth (docs/adr/0008-iceberg-tables.md).
"""
