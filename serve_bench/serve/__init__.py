"""Serving a checkpoint with vLLM's OpenAI-compatible server."""
