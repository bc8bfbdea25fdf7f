"""Synthesis: coding problems -> candidate gyms -> verified gyms. ``verify`` holds the stable checks."""
