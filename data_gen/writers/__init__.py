"""Training files the engines load without edits: ShareGPT, Alpaca and KD rows, dataset_info.json, Axolotl entries."""
