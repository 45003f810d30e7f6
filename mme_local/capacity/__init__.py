"""Predicting capacity: measured footprints, recorded or synthetic traffic, a simulator of the
MME platform that uses the live cache's eviction policy, and a plan over instance types."""
