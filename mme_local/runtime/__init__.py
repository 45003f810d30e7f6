"""The model server: finding or provisioning Triton, running it, and talking to it."""
