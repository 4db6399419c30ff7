"""Tasks as data: the loader, the reply parser and metrics, and one folder per task (prompts, schema, labels)."""
