"""`manage.py evaluate`: measure accuracy and speed of visual search on a shop's own labelled photos.

dataset (read and validate groups.csv) → sandbox (a throw-away catalog and index) → runner (import, index, query
through the real search service) → summary (numbers) → report (JSON, HTML with plots). ``metrics`` is pure numpy.
"""
