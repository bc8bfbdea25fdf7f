"""veRL integration: a multi-turn agent loop that reaches gyms only through MCP."""
