"""Decontamination: find training records that overlap a held-out benchmark, as a linter and as a gate on training.

Every text field of every record (a message's content, a prompt, a completion, a line of a text file) is compared
with every benchmark item by the methods in `posttrain.decontam.methods`, each with its own score and threshold:
- `ngram13`, `ngram8`: the fraction of the item's word n-grams (after case, punctuation and whitespace are
  normalised) that the field contains, as open-instruct scores it; an item shorter than n words counts as one
  n-gram of its own length, and one shorter than `MIN_ITEM_WORDS` only matches a field equal to it;
- `minhash`: near-duplicate fields, by the Jaccard similarity of word 5-gram sets, estimated with datasketch's
  MinHash and found with its LSH index;
- `embedding` (opt-in): cosine similarity of all-MiniLM-L6-v2 sentence embeddings, for paraphrases.

The benchmarks (`posttrain.decontam.benchmarks`) are the held-out sets available offline, by name, plus any file.
`posttrain decontaminate` names every offending record; `posttrain.gate` refuses, drops or (explicitly)
lets through a stage's training data.
"""
