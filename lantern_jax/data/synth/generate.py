"""Deterministic pair generation per split: jobs from the split's occupations, members per job,
fit-level targets from a shuffled deck."""
from __future__ import annotations

import random

from lantern_jax.data.schema import Pair
from lantern_jax.data.synth.jobs import Context, SplitPlan, make_job, split_plan
from lantern_jax.data.synth.members import make_member
from lantern_jax.data.synth.rules import DEFAULT_FRACTIONS, SPLITS, seeded_rng
from lantern_jax.data.taxonomy import Taxonomy, load_taxonomy


def split_context(tx: Taxonomy, plan: SplitPlan, split: str, rng: random.Random) -> Context:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    occupations = plan.occupations(tx, split)
    companies = plan.companies(tx, split)
    background = plan.occupations(tx, "train")  # distant members come from the shared pool
    cities = tuple(sorted({loc for loc in tx.locations if "," in loc and "remote" not in loc.lower()
                           and len(loc) < 40}))
    verbs = frozenset(t.split()[0].lower() for o in tx.occupations for t in o.tasks if t.split())
    return Context(tx=tx, rng=rng, occupations=occupations, background=background,
                    companies=companies, cities=cities, verbs=verbs)


def generate_pairs(n: int, *, seed: int, split: str = "train", members_per_job: int = 3,
                   taxonomy: Taxonomy | None = None) -> list[Pair]:
    """`n` D_base pairs for `split`, deterministic in (seed, split). Each job gets up to
    `members_per_job` members; fit-level targets cycle through a shuffled low/medium/high deck."""
    tx = taxonomy or load_taxonomy()
    rng = seeded_rng(seed, "pairs", split)
    ctx = split_context(tx, split_plan(seed, tx), split, rng)
    pairs: list[Pair] = []
    job_index = 0
    targets: list[str] = []
    while len(pairs) < n:
        occ = rng.choice(ctx.occupations)
        job = make_job(ctx, occ, f"{split}-{seed}-j{job_index:05d}")
        job_index += 1
        for _ in range(min(members_per_job, n - len(pairs))):
            if not targets:
                targets = ["low", "medium", "high"]
                rng.shuffle(targets)
            i = len(pairs)
            member, truth = make_member(ctx, job, occ, f"{split}-{seed}-m{i:05d}", targets.pop())
            pairs.append(Pair(pair_id=f"{split}-{seed}-{i:05d}", job=job, member=member, truth=truth))
    return pairs


def make_splits(n_total: int, *, seed: int, fractions: dict[str, float] | None = None,
                taxonomy: Taxonomy | None = None) -> dict[str, list[Pair]]:
    """All splits, sized by `fractions` (default DEFAULT_FRACTIONS; the remainder goes to train)."""
    fractions = fractions or DEFAULT_FRACTIONS
    unknown = set(fractions) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; expected some of {', '.join(SPLITS)}")
    sizes = {s: int(n_total * f) for s, f in fractions.items()}
    sizes["train"] = sizes.get("train", 0) + n_total - sum(sizes.values())
    return {s: generate_pairs(k, seed=seed, split=s, taxonomy=taxonomy) for s, k in sizes.items()}
