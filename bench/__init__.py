"""Benchmarks for mizaic_processor against raw azure-storage-blob and raw AES-GCM.

Run ``python -m bench`` (or ``make bench``); ``python -m bench --help`` lists the options.
Each scenario starts its own throw-away Azurite (disk mode, temporary folder) and measures
the library and its baseline in the same process against that same Azurite, alternating
which goes first in each repetition. Results are written to ``bench/results/``.

Not part of ``make test``: nothing here is a timed test.
"""
