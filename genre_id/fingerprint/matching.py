"""Scoring candidates by consistent time offset, and the decision to name one.

A query's hashes are looked up in the store; every hit gives a recording and
the difference ``db_time - query_time`` (frames).  For the right recording
many hits share one difference (the query's position in it); for any other
recording the differences scatter.  A recording's score is the number of hits
in the best offset bin, widened by ``±tolerance`` frames to absorb the jitter
of peak positions after noise or a codec.

The decision (:class:`MatchThreshold`) is conservative: the best candidate is
named only when its score is high in absolute terms *and* clearly above the
best other recording's.  Not naming a known song is acceptable; naming the
wrong song is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_THRESHOLD", "Candidate", "MatchThreshold", "decide", "join_hits", "rank_candidates"]

_OFFSET_BITS = 32
_OFFSET_BIAS = 1 << (_OFFSET_BITS - 1)


@dataclass(frozen=True)
class Candidate:
    """One recording's best alignment with the query."""

    recording_id: int
    offset_frames: int  #: query start within the recording, frames
    score: int  #: hits aligned at that offset (±tolerance)


@dataclass(frozen=True)
class MatchThreshold:
    """When the best candidate is named.

    Both must hold: ``score >= min_score`` and
    ``score >= min_ratio * second_best_score`` (the second best counted as at
    least 1).

    Tuned with ``scripts/bench_fingerprint.py --tune`` on clips disjoint from
    those the benchmark reports on (index: the first 3 GTZAN clips of each
    genre; queries: the 4th and 5th of each genre, not indexed).  Over 520
    such queries (5 s, 10 s and 30 s, clean and with noise) chance alignments
    reached a best score of 8 at most (99th percentile 6) and a best/second
    ratio of 4 at most (ratios of 3 or more only at scores of 3-4); noisy (10 dB SNR) 5 s
    excerpts of indexed clips scored 18 at least (1st percentile 46, median
    164).  ``min_score`` 15 is about twice the worst chance alignment, and the
    ratio guards against larger databases, where chance scores creep up.
    """

    min_score: int = 15
    min_ratio: float = 3.0

    def accepts(self, best: int, second: int) -> bool:
        """Whether a best score ``best`` beside a runner-up ``second`` is a match."""
        return best >= self.min_score and best >= self.min_ratio * max(second, 1)


#: The threshold :class:`~genre_id.fingerprint.index.FingerprintIndex` uses by default.
DEFAULT_THRESHOLD = MatchThreshold()


def join_hits(query_hashes: np.ndarray, hit_hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair every stored hit with every query hash equal to it.

    Returns ``(query_index, hit_index)``: ``query_hashes[query_index[k]] ==
    hit_hashes[hit_index[k]]`` for every ``k``, and every such pair appears
    once.  A query hash occurring twice (two anchors) pairs with each hit twice.
    """
    order = np.argsort(query_hashes, kind="stable")
    sorted_q = query_hashes[order]
    lo = np.searchsorted(sorted_q, hit_hashes, side="left")
    hi = np.searchsorted(sorted_q, hit_hashes, side="right")
    n = hi - lo
    total = int(n.sum())
    hit_index = np.repeat(np.arange(hit_hashes.size), n)
    starts = np.repeat(lo - (np.cumsum(n) - n), n)
    query_index = order[starts + np.arange(total)]
    return query_index, hit_index


def rank_candidates(
    query_times: np.ndarray, hit_query_index: np.ndarray, hit_recordings: np.ndarray, hit_times: np.ndarray,
    *, tolerance: int = 1, top: int = 2,
) -> list[Candidate]:
    """The ``top`` recordings with the best aligned-hit counts, best first.

    Parameters
    ----------
    query_times
        Anchor time (frames) of every query hash.
    hit_query_index
        For every hit, the index of the query hash it answers.
    hit_recordings, hit_times
        For every hit, the recording id and its anchor time (frames) there.
    tolerance
        Hits whose offset is within this many frames of the best offset count too.
    top
        How many recordings to return (at most one entry per recording).
    """
    if hit_recordings.size == 0:
        return []
    diffs = hit_times.astype(np.int64) - query_times[hit_query_index].astype(np.int64)
    keys = (hit_recordings.astype(np.int64) << _OFFSET_BITS) + (diffs + _OFFSET_BIAS)
    uniq, counts = np.unique(keys, return_counts=True)
    widened = counts.copy()
    for shift in range(1, tolerance + 1):
        for sign in (-1, 1):
            neighbour = uniq + sign * shift
            pos = np.searchsorted(uniq, neighbour)
            pos_c = np.minimum(pos, uniq.size - 1)
            found = uniq[pos_c] == neighbour
            widened += np.where(found, counts[pos_c], 0)
    recs = uniq >> _OFFSET_BITS
    # best bin per recording: sort by (recording, -score) and keep the first of each.
    order = np.lexsort((-widened, recs))
    first = np.ones(order.size, dtype=bool)
    first[1:] = recs[order][1:] != recs[order][:-1]
    best = order[first]
    best = best[np.argsort(-widened[best], kind="stable")][:top]
    return [
        Candidate(
            recording_id=int(recs[i]),
            offset_frames=int((uniq[i] & ((1 << _OFFSET_BITS) - 1)) - _OFFSET_BIAS),
            score=int(widened[i]),
        )
        for i in best
    ]


def decide(candidates: list[Candidate], *, threshold: MatchThreshold = DEFAULT_THRESHOLD) -> Candidate | None:
    """The best candidate if ``threshold`` accepts it against the runner-up, else ``None``."""
    if not candidates:
        return None
    best = candidates[0]
    second = candidates[1].score if len(candidates) > 1 else 0
    return best if threshold.accepts(best.score, second) else None
