"""The only package that talks to PostgreSQL: the typed schema (whose changes come only from
migrations), the embedded or external database and its replicas, and one module per concern
(indexing, search, people, dedup, checks, backups, keys). Everything above calls these with
plain values and gets plain records back."""
