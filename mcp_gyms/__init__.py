"""CodeGym-MCP runtime: the gym contract, the bank, the sandbox, MCP serving and the shared client."""

from .gym import Gym, GymSpec, tool

__all__ = ["Gym", "GymSpec", "tool"]
__version__ = "0.1.0"
