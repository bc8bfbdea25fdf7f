"""Evaluation of policies against gyms, reached only through MCP (``mcp_gyms.client``)."""
