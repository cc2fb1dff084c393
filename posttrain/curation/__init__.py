"""The parts of `posttrain curate` (the command, its rule table and report live in `posttrain.curate`).

- `items`: records read with their JSONL rows, and the texts the rules read (the question, the response);
- `rules`: what a rule returns (kept items, dropped items with a reason) and how a per-record check becomes a rule;
- `quality`: length and quality checks on one record;
- `dedup`: exact and near-duplicate removal inside the set (MinHash LSH);
- `difficulty`: the policy's pass rate on each task and the pass-rate band kept;
- `diversity`: k-means on sentence embeddings and a selection spread across the clusters.
"""
