"""The end-to-end demo: a small data mix (`mix.py`) for SFT on SmolLM2-135M-Instruct and its held-out evaluations."""
