"""Logit-level distillation: KD rows, the teacher's label belief, and the served (vLLM) scorer."""
