"""Tasks as data: the loader, the reply parser, the metric kinds eval scores fields with, and one folder per task."""
