"""The model cache: per-TargetModel state, downloads, loads and LRU eviction."""
