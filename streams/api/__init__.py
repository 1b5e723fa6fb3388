"""The HTTP API for the storefront and the monitoring dashboard (``recsys api``).

It reads only what the worker and the trainer write to Redis (and the trainer's
reports); the fastest path for the storefront remains one Redis GET.
"""
