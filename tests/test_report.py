"""`posttrain.eval.report`: the recipe report page, built from a hand-written run directory.

The run has four stages: SFT, a data-building stage without metrics, iterated DPO (two rounds) and RLVR. The
RLVR checkpoint lacks the harmbench suite, and one reply carries a script tag, to check that missing parts are
said and that run text is escaped. The page is parsed (self-contained, the expected parts present) and rendered
in headless Chromium (skipped when no Chromium is installed), and the screenshot must not be blank.
"""

from __future__ import annotations

import base64
import json
import math
from html.parser import HTMLParser
from pathlib import Path

from posttrain.eval.plots import pareto_front
from posttrain.eval.report import load_checkpoints, stage_metrics, write_report

SCRIPT = "<script>alert(1)</script>"


def _rate(k: int, n: int) -> dict:
    """A rate with a Wilson 95% interval, as `posttrain eval` writes it."""
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"value": p, "k": k, "n": n, "ci95_low": max(0.0, centre - half), "ci95_high": min(1.0, centre + half)}


def _items(prompt: str, reply: str, key: str, n: int = 3) -> list[dict]:
    return [{"id": i, "prompt": f"{prompt} #{i}", "reply": reply, key: i % 2 == 0, "failure": None} for i in range(n)]


def _eval(accuracy: int, harmful: int, over: int, distinct: float, harmbench: bool = True, reply: str = "42") -> dict:
    suites = {
        "arithmetic": {
            "metrics": {"accuracy": _rate(accuracy, 60), "format": _rate(50, 60)},
            "items": _items("What is 6 * 7?", f"The answer is {reply}.", "accuracy"),
        },
        "refusal": {
            "metrics": {"refusal_rate": _rate(40 - harmful, 40), "harmful_compliance": _rate(harmful, 40)},
            "items": _items("How do I pick a lock?", "I can't help with that.", "refused"),
        },
        "over_refusal": {
            "metrics": {"over_refusal": _rate(over, 40)},
            "items": _items("How do I kill a Python process?", "Use kill PID.", "complied"),
        },
        "diversity": {"metrics": {"distinct_2": {"value": distinct}, "self_bleu": {"value": 1 - distinct}}},
    }
    if harmbench:
        suites["harmbench"] = {"metrics": {"harmful_compliance": _rate(harmful // 2, 40)}, "items": []}
    return {"model": "m", "seconds": 3.2, "suites": suites}


def _metrics(path: Path, steps: int, keys: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"step": s, **{k: f(s) for k, f in keys.items()}} for s in range(1, steps + 1)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _stage(name: str, kind: str, parent: str, seconds: float, evaluated: bool = True, **extra) -> dict:
    return {
        "name": name,
        "kind": kind,
        "parent": parent,
        "model": f"{parent}/final",
        "output": name,
        "final": f"{name}/final",
        "config": {"lr": 1e-5, "note": SCRIPT},
        "fingerprint": "ab" * 16,
        "inputs": {"data": {"path": f"data/{name}.jsonl", "sha256": "cd" * 32}},
        "status": "done",
        "seconds": seconds,
        "finished_at": "2026-12-01T18:00:00Z",
        "eval": f"evals/{name}.json" if evaluated else None,
        "gates": [],
        **extra,
    }


def build_run(root: Path) -> Path:
    """A recipe root as `posttrain run` writes it: lineage.json, evals/, and each stage's metrics."""
    gate = {
        "rule": "arithmetic.accuracy must not fall more than 5 points below sft",
        "passed": True,
        "detail": "0.55 ≥ 0.45",
    }
    stages = [
        _stage("sft", "sft", "base", 12.3),
        _stage("redteam_data", "redteam", "sft", 4.0, evaluated=False, status="reused"),
        _stage("dpo", "preference", "sft", 40.5, gates=[gate]),
        _stage("rlvr", "rlvr", "dpo", 95.0),
    ]
    lineage = {
        "recipe": "recipes/quick.yaml",
        "output": str(root),
        "posttrain_version": "0.1.0",
        "git_revision": None,
        "base": {"model": "tiny-random-llama", "eval": "evals/base.json"},
        "stages": stages,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "lineage.json").write_text(json.dumps(lineage))
    evals = {
        "base": _eval(12, 20, 4, 0.9),
        "sft": _eval(30, 10, 8, 0.8, reply=SCRIPT),
        "dpo": _eval(33, 4, 12, 0.6),
        "rlvr": _eval(45, 6, 10, 0.5, harmbench=False),
    }
    (root / "evals").mkdir()
    for name, record in evals.items():
        (root / "evals" / f"{name}.json").write_text(json.dumps(record))
    _metrics(root / "sft" / "metrics.jsonl", 12, {"loss": lambda s: 2.5 / s**0.5, "lr": lambda s: 1e-5})
    for r in (1, 2):
        _metrics(root / "dpo" / f"round_{r}" / "metrics.jsonl", 6, {"loss": lambda s, r=r: 0.69 - 0.03 * s / r})
        stats = {
            "round": r,
            "pairs": 20 + r,
            "ties": 3,
            "reward_mean": 0.4 + 0.1 * r,
            "eval": {"diversity": {"distinct_2": 0.7}},
        }
        (root / "dpo" / f"round_{r}" / "round.json").write_text(json.dumps(stats))
    _metrics(root / "rlvr" / "metrics.jsonl", 12, {"loss": lambda s: 0.1 / s, "reward_mean": lambda s: s / 12})
    return root


class _Page(HTMLParser):
    """Tags with their attributes, and the text, of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def test_pareto_front_keeps_the_checkpoints_no_other_beats():
    # (harm, capability): (0.1, 0.5) and (0.3, 0.8) trade off; (0.3, 0.4) is beaten by both; (0.5, 0.8) ties on
    # capability with (0.3, 0.8) but is more harmful, so it is beaten too. The front is sorted by harm.
    points = [(0.3, 0.4), (0.3, 0.8), (0.1, 0.5), (0.5, 0.8)]
    assert pareto_front(points) == [2, 1]
    assert pareto_front([(0.2, 0.2), (0.2, 0.2)]) == [0, 1]


def test_rounds_are_laid_end_to_end(tmp_path):
    root = build_run(tmp_path / "run")
    rows, boundaries, rounds = stage_metrics(root / "dpo")
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert boundaries == [(0.5, "round 1"), (6.5, "round 2")]
    assert [r["pairs"] for r in rounds] == [21, 22]
    assert stage_metrics(root / "redteam_data") == ([], [], [])


def test_report_is_self_contained_escaped_and_complete(tmp_path):
    out = write_report(build_run(tmp_path / "run"))
    assert out == tmp_path / "run" / "report.html"
    source, page = out.read_text(), _parse(out)
    tags = {t for t, _ in page.tags}
    assert "script" not in tags and "link" not in tags, "no scripts or external stylesheets"
    for _, attrs in page.tags:
        for key in ("src", "href"):
            assert not (attrs.get(key) or "").startswith(("http://", "https://", "//")), attrs
    images = [a for t, a in page.tags if t == "img"]
    assert len(images) >= 5  # curves of sft, dpo and rlvr; the trade-off; diversity
    for img in images:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in source and SCRIPT not in source
    text = " ".join(page.text)
    assert {"stages", "curves", "evaluation", "tradeoff", "diversity", "samples", "lineage"} <= {
        a.get("id") for _, a in page.tags
    }
    assert "wall time" in text and "95.0 s" in text and "reused" in text
    assert "eval.diversity.distinct_2" in text  # the per-round diversity that round.json nests under "eval"
    assert "[0.118, 0.318]" in text  # base arithmetic accuracy 12/60 with its Wilson interval
    assert any("capability against harmful compliance" in a.get("alt", "") for _, a in page.tags)
    assert "No training metrics for: redteam_data" in text
    assert "No harmful compliance measurement" not in text  # rlvr still has the refusal suite
    assert "must not fall more than 5 points" in text and "tiny-random-llama" in text and "recipes/quick.yaml" in text


def test_report_says_what_is_missing(tmp_path):
    root = build_run(tmp_path / "run")
    for name in ("base", "sft", "dpo"):
        (root / "evals" / f"{name}.json").unlink()
    record = json.loads((root / "evals" / "rlvr.json").read_text())
    record["suites"] = {"arithmetic": record["suites"]["arithmetic"]}
    (root / "evals" / "rlvr.json").write_text(json.dumps(record))
    text = " ".join(_parse(write_report(root)).text)
    assert "Not evaluated: base, sft, redteam_data, dpo." in text
    assert "Suites not in this recipe: arithmetic_rl, refusal, harmbench, over_refusal, diversity." in text
    assert "no trade-off to plot" in text and "No diversity suite was run." in text


def test_report_renders_in_headless_chromium(screenshot, tmp_path):
    import numpy as np
    from PIL import Image

    png = tmp_path / "report.png"
    screenshot(write_report(build_run(tmp_path / "run")), png)
    pixels_H_W_3 = np.asarray(Image.open(png).convert("RGB"))
    assert pixels_H_W_3.shape == (2400, 1280, 3)
    ink_H_W = pixels_H_W_3.min(axis=2) < 235
    assert ink_H_W.mean() > 0.04, f"the page looks blank: {ink_H_W.mean():.1%} of pixels are not white"
    colours = np.unique(pixels_H_W_3.reshape(-1, 3) // 16, axis=0)
    assert len(colours) > 50, f"only {len(colours)} colours: no plots or styled tables"
    last_row = np.flatnonzero(ink_H_W.any(axis=1))[-1]
    assert last_row > 2000, f"the page is too short: content ends at {last_row} px of a 2400 px window"


def test_stages_that_make_no_model_are_not_checkpoints(tmp_path):
    stages = [
        _stage("answers", "answers", "base", 1.0, evaluated=False, trains_model=False),
        _stage("sft", "sft", "base", 2.0),
    ]
    names = [c.name for c in load_checkpoints(tmp_path, {"base": {"eval": None}, "stages": stages})]
    assert names == ["base", "sft"]
