"""Reading input: file formats, encodings and text rules, duplicates, and hash-based splits."""
