"""Pipeline definitions, the kfp.Client verbs and the savflow CLI."""
