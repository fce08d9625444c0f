"""FAQ matching figures: precision/recall on the labelled pairs, time against a 1,000-entry FAQ."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.settings import Settings  # noqa: E402
from bot.textindex import TextIndex, warm_up  # noqa: E402

PAIRS = ROOT / "tests" / "data" / "faq_pairs.json"


def scores(data: dict, threshold: float) -> dict[str, tuple[float, float, int]]:
    """Precision, recall and pair count per language and overall."""
    index = TextIndex({e["id"]: e["question"] for e in data["faq"]})
    tally: dict[str, list[int]] = {}
    for pair in data["pairs"]:
        wanted = pair["faq"] if isinstance(pair["faq"], list) else [pair["faq"]]
        found = index.best(pair["query"], threshold)
        hit = found is not None and found[0] in wanted
        for group in (pair["lang"], "all"):
            t = tally.setdefault(group, [0, 0, 0, 0])  # true pos, predicted, positives, n
            t[0] += hit
            t[1] += found is not None
            t[2] += pair["faq"] is not None
            t[3] += 1
    return {g: (t[0] / max(t[1], 1), t[0] / max(t[2], 1), t[3]) for g, t in tally.items()}


def main() -> None:
    """Print the figures."""
    warm_up()
    data = json.loads(PAIRS.read_text("utf-8"))
    default = Settings(_env_file=None).faq_match_threshold
    print(f"labelled pairs: {len(data['pairs'])} against {len(data['faq'])} FAQ entries")
    for threshold in sorted({0.2, default, 0.3, 0.35}):
        mark = " (default FAQ_MATCH_THRESHOLD)" if threshold == default else ""
        print(f"threshold {threshold:.2f}{mark}")
        for group, (p, r, n) in sorted(scores(data, threshold).items()):
            print(f"  {group:5} n={n:2}  precision {p:.3f}  recall {r:.3f}")
    base = [e["question"] for e in data["faq"]]
    docs = {n: f"{base[n % len(base)]} 第{n}讲 topic{n} 练习{n % 97}" for n in range(1000)}
    started = time.perf_counter()
    index = TextIndex(docs)
    build = time.perf_counter() - started
    queries = [p["query"] for p in data["pairs"]]
    timings = []
    for _ in range(5):
        for query in queries:
            t0 = time.perf_counter()
            index.best(query, default)
            timings.append(time.perf_counter() - t0)
    print(
        f"1,000-entry FAQ: build {build * 1000:.1f} ms; match one question: "
        f"median {statistics.median(timings) * 1000:.2f} ms, "
        f"p95 {sorted(timings)[int(len(timings) * 0.95)] * 1000:.2f} ms "
        f"({len(timings)} matches)"
    )


if __name__ == "__main__":
    main()
