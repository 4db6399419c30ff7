"""The teacher's API: request and response types, the OpenAI-compatible client, rate limits, budget, prices,
the response cache and batch files."""
