"""veRL integration: a multi-turn agent loop that reaches gyms only through MCP.

- :mod:`rl.agent_loop` — ``CodeGymAgentLoop``, the veRL ``AgentLoopBase`` registered as ``codegym_agent``
  (imports veRL; load it by name from ``rl/configs/agent_loop.yaml``);
- :mod:`rl.gyms` — gym servers as the loop sees them, over :mod:`mcp_gyms.client` (pooled connections);
- :mod:`rl.export` — ``codegym export-verl``: a bank as train/val parquet for veRL's ``RLHFDataset``;
- :mod:`rl.reward` — the fallback reward function for rows the loop left without a score;
- :mod:`rl.servers` — one ``codegym serve --http`` per Ray node for training;
- :mod:`rl.train` + ``rl/configs/`` — the GRPO launcher with the paper's settings as defaults;
- :mod:`rl.settings` — the typed settings and per-row episode spec;
- :mod:`rl.testing` — a local Qwen-style tokenizer, a scripted LLM server manager and a test bank.

Importing ``rl`` itself imports nothing heavy; only ``rl.agent_loop`` and ``rl.train``'s launch need veRL.
"""
