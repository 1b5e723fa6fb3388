"""The trainer's Spark engine: the same lists as the local engine, computed where the history lives.

``recsys train --engine spark`` reads the history with Spark (``reading``), lets the shared
validation and guard choose on a sample of customers collected to the driver
(``trainer``), computes each kept component's scores on the executors (``scores``), builds
every customer's three lists there (``lists``), and writes the artifact and Redis from the
executors (``export``). Workers, the API and the storefront cannot tell which engine made a
version: the files, keys and encodings are the local engine's.
"""
