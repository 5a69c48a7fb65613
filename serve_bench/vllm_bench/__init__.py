"""``serve-bench bench``: `vllm bench serve`'s command line (args.py), translated into serve-bench's profile and
study (translate.py, sharegpt.py), run as any study, and its result written in vLLM's format (result.py); run.py
ties them together."""
