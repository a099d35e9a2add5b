"""Coordinator round loop, party agent, messages, and the transport seam between them."""
