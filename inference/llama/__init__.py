"""LLaMA-1 inference engine for Meta-format checkpoints: model, checkpoint loading, tokenizer, generation."""
