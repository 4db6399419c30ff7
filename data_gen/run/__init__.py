"""One distillation run: the passes, the per-row ask / repair / re-ask ladder, the workspace, the output folder,
the manifest and card."""
