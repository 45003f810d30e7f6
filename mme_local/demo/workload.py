"""What the demo sends: which model each request names, and the sentences it embeds."""

from __future__ import annotations

import numpy as np

# Real sentences for the workload: what a semantic-search service might be asked to embed.
SENTENCES = (
    "How do I reset my password?",
    "The delivery arrived two days late and the box was damaged.",
    "Can I change the shipping address after placing an order?",
    "The new phone has a much better camera than the old one.",
    "What time does the pharmacy on Main Street close tonight?",
    "Our quarterly revenue grew by twelve percent.",
    "The museum is free to visit on the first Sunday of each month.",
    "She finished the marathon in just under four hours.",
    "Heavy rain is expected across the region this weekend.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Please cancel my subscription at the end of this billing period.",
    "The train to the airport leaves every fifteen minutes.",
    "He has been learning to play the piano since he was six.",
    "The library extended its opening hours during exam season.",
    "Is this jacket available in a larger size?",
    "The committee postponed the vote until next month.",
    "Solar panels on the roof cover most of the house's electricity.",
    "My laptop battery drains very quickly after the last update.",
    "The children built a sandcastle on the beach.",
    "A new bridge will connect the two halves of the city.",
)
# The output check: a paraphrase pair must be closer than an unrelated pair.
PARAPHRASE = ("A man is playing a guitar on stage.", "Someone performs a song with a guitar.")
UNRELATED = "The central bank raised interest rates again."


def zipf_workload(models: int, requests: int, exponent: float, seed: int) -> list[int]:
    """Model index per request; popularity ranks are shuffled so model-0 is not always top."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, models + 1, dtype=np.float64) ** -exponent
    ranked = rng.permutation(models)
    picks = rng.choice(models, size=requests, p=weights / weights.sum())
    return [int(ranked[pick]) for pick in picks]
