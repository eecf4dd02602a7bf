"""Command-line tools: ``parnet-export``, ``parnet-bench`` (thin layers over the library)."""
