"""Generate the two course datasets the recommender figures use (no public one fits; see README).

``enrolments.csv``: implicit ``user,item,1,timestamp`` (3,000 learners x 300 courses).
``course_ratings.csv``: explicit ``user,item,stars,timestamp`` (400 learners x 40 courses).

How learners behave here: courses sit in categories and, inside a category, in tracks of
ordered levels (intro -> advanced). Popularity is long-tailed (Zipf, shuffled across
categories). A learner has one or two favourite categories; each next course is, with the
learner's own probabilities, the next level of a track they are on, another course of a favourite
category, or anything (popularity-weighted); a share of picks is pure noise (uniform). Stars are
higher inside favourite categories and for courses that follow the learner's last one.

Usage: python bench/datasets.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def generate(n_users, n_items, n_cats, per_user, seed, explicit):
    """Return rows ``(user, item, value, ts)`` following the behaviour in the module doc."""
    rng = np.random.default_rng(seed)
    cat = rng.integers(0, n_cats, n_items)
    pop = (1.0 / np.arange(1, n_items + 1) ** 0.9)[rng.permutation(n_items)]
    track_len = 4
    nxt = np.full(n_items, -1)
    for c in range(n_cats):
        members = rng.permutation(np.flatnonzero(cat == c))
        for start in range(0, len(members), track_len):
            track = members[start:start + track_len]
            nxt[track[:-1]] = track[1:]
    rows = []
    t0 = 1.7e9
    for user in range(1, n_users + 1):
        favs = rng.choice(n_cats, 1 + int(rng.random() < 0.4), replace=False)
        p_next, p_fav, p_noise = rng.uniform(0.1, 0.45), rng.uniform(0.25, 0.55), 0.1
        count = int(np.clip(rng.lognormal(np.log(per_user), 0.5), 3, n_items // 2))
        taken = np.zeros(n_items, dtype=bool)
        last = -1
        t = t0 + rng.uniform(0, 3e7)
        for _ in range(count):
            r = rng.random()
            if r < p_next and last >= 0 and nxt[last] >= 0 and not taken[nxt[last]]:
                item = int(nxt[last])
            else:
                if r < p_next + p_fav:
                    w = pop * np.isin(cat, favs)
                elif r < 1 - p_noise:
                    w = pop.copy()
                else:
                    w = np.ones(n_items)
                w = np.where(taken, 0.0, w)
                if w.sum() <= 0:
                    w = np.where(taken, 0.0, 1.0)
                item = int(rng.choice(n_items, p=w / w.sum()))
            follows = last >= 0 and nxt[last] == item
            taken[item] = True
            last = item
            t += rng.exponential(5 * 86400)
            if explicit:
                base = 3.0 + 1.0 * bool(np.isin(cat[item], favs)) + 0.5 * follows
                value = float(np.clip(np.rint(base + rng.normal(0, 0.9)), 1, 5))
            else:
                value = 1.0
            rows.append((user, item + 1, value, int(t)))
    return rows


def write(path: Path, rows) -> None:
    """CSV with a header, the format ``coursebot recommender evaluate --ratings`` reads."""
    lines = ["user,item,rating,timestamp"] + [f"{u},{i},{v:g},{t}" for u, i, v, t in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str]) -> None:
    """Write both files into OUT_DIR."""
    out = Path(argv[1] if len(argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    write(out / "enrolments.csv", generate(3000, 300, 12, 8, seed=1, explicit=False))
    write(out / "course_ratings.csv", generate(400, 40, 5, 6, seed=2, explicit=True))
    print(f"wrote {out / 'enrolments.csv'} and {out / 'course_ratings.csv'}")


if __name__ == "__main__":
    main(sys.argv)
