"""The database layer: numbered SQL migrations and the queries shared by the collector, the site
and the CLI. Imports nothing of ours; callers pass connections or connection strings."""
