"""Dedup reports: the five tiers and how a pair of photos or faces falls in one (tiers), the
report made from the candidate pairs that the database's indexes give (report; never all pairs),
and its files: JSON, CSV and one HTML page (report_files). Nothing is deleted."""
