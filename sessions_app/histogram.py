"""Mergeable log-scale histograms of session durations, kept on every rollup row.

A histogram is an integer array indexed by bucket: bucket 1 holds durations <= MIN_SECONDS,
bucket i >= 2 holds (MIN_SECONDS * GAMMA**(i-2), MIN_SECONDS * GAMMA**(i-1)]. A bucket is read
back as 2 * upper / (GAMMA + 1), within RELATIVE_ERROR of every value in it, so a quantile read
from merged histograms is a real percentile to within RELATIVE_ERROR, over any range of rows.

Arrays are stored trimmed, with Postgres's explicit lower bound (`'[5:7]={1,0,2}'`), so a rollup
row holding a few sessions stays a few bytes. Merging (element-wise sums) happens in SQL with
the functions in SQL_FUNCTIONS, created by a migration from these constants.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

RELATIVE_ERROR = 0.02
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
MIN_SECONDS = 0.01
# Past ~1e9 s (31 years) everything shares the last bucket; no session lives that long.
MAX_BUCKET = 1 + math.ceil(math.log(1e9 / MIN_SECONDS) / math.log(GAMMA))


def bucket(seconds: float) -> int:
    """The bucket index of a duration."""
    if not seconds > MIN_SECONDS:  # also NaN and negatives
        return 1
    index = 1 + math.ceil(math.log(seconds / MIN_SECONDS) / math.log(GAMMA) - 1e-9)
    return min(index, MAX_BUCKET)


def bucket_value(index: int) -> float:
    """The value a bucket stands for (within RELATIVE_ERROR of anything in it)."""
    if index <= 1:
        return 0.0
    return MIN_SECONDS * GAMMA ** (index - 1) * 2 / (GAMMA + 1)


def build(values: Iterable[float]) -> dict[int, int]:
    """{bucket: count} of some durations."""
    counts: dict[int, int] = {}
    for value in values:
        index = bucket(value)
        counts[index] = counts.get(index, 0) + 1
    return counts


def quantile(counts: dict[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of a {bucket: count} histogram, None when it is empty.

    As percentile_cont does, it interpolates between the elements at ranks floor and ceil of
    q * (n - 1); each is read as its bucket's value, so the result is within RELATIVE_ERROR of
    percentile_cont over the raw values.
    """
    total = sum(counts.values())
    if total == 0:
        return None
    rank = q * (total - 1)
    low, high = math.floor(rank), math.ceil(rank)
    low_value = high_value = None
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if low_value is None and seen > low:
            low_value = bucket_value(index)
        if seen > high:
            high_value = bucket_value(index)
            break
    assert low_value is not None and high_value is not None
    return low_value + (rank - low) * (high_value - low_value)


# Postgres side. Bucket and value use the same constants as above; `fs_hist_add` sums two
# trimmed arrays (either may be NULL), `fs_hist_merge` is the aggregate over rows,
# `fs_hist_from_buckets` builds one from per-bucket counts, `fs_hist_quantile` reads a
# quantile as `quantile` does.
SQL_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION fs_hist_bucket(seconds float8) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN seconds IS NULL OR seconds <= {MIN_SECONDS!r} THEN 1
              ELSE least({MAX_BUCKET}, 1 + ceil(ln(seconds / {MIN_SECONDS!r})
                                           / ln({GAMMA!r}) - 1e-9)::int) END
$$;

CREATE OR REPLACE FUNCTION fs_hist_value(index int) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN index <= 1 THEN 0::float8
              ELSE {MIN_SECONDS!r} * power({GAMMA!r}::float8, index - 1)
                   * 2 / ({GAMMA!r} + 1) END
$$;

CREATE OR REPLACE FUNCTION fs_hist_add(a int[], b int[]) RETURNS int[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  lo int; hi int; out int[];
BEGIN
  IF a IS NULL OR cardinality(a) = 0 THEN RETURN b; END IF;
  IF b IS NULL OR cardinality(b) = 0 THEN RETURN a; END IF;
  IF array_lower(b, 1) >= array_lower(a, 1) AND array_upper(b, 1) <= array_upper(a, 1) THEN
    -- The common case when merging many rows: add into `a` (the aggregate's state) in place.
    FOR i IN array_lower(b, 1)..array_upper(b, 1) LOOP
      a[i] := coalesce(a[i], 0) + coalesce(b[i], 0);
    END LOOP;
    RETURN a;
  END IF;
  lo := least(array_lower(a, 1), array_lower(b, 1));
  hi := greatest(array_upper(a, 1), array_upper(b, 1));
  out := array_fill(0, ARRAY[hi - lo + 1], ARRAY[lo]);
  FOR i IN array_lower(a, 1)..array_upper(a, 1) LOOP
    out[i] := out[i] + coalesce(a[i], 0);
  END LOOP;
  FOR i IN array_lower(b, 1)..array_upper(b, 1) LOOP
    out[i] := out[i] + coalesce(b[i], 0);
  END LOOP;
  RETURN out;
END $$;

CREATE OR REPLACE AGGREGATE fs_hist_merge(int[]) (SFUNC = fs_hist_add, STYPE = int[]);

-- From raw durations: count per bucket first (a hash aggregate), then one array.
CREATE OR REPLACE FUNCTION fs_hist_from_buckets(buckets int[], counts bigint[]) RETURNS int[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  lo int; hi int; out int[];
BEGIN
  IF buckets IS NULL OR cardinality(buckets) = 0 THEN RETURN NULL; END IF;
  SELECT min(x), max(x) INTO lo, hi FROM unnest(buckets) AS x;
  out := array_fill(0, ARRAY[hi - lo + 1], ARRAY[lo]);
  FOR i IN 1..cardinality(buckets) LOOP
    out[buckets[i]] := out[buckets[i]] + counts[i];
  END LOOP;
  RETURN out;
END $$;

CREATE OR REPLACE FUNCTION fs_hist_quantile(h int[], q float8) RETURNS float8
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  total bigint := 0; seen bigint := 0; rank float8; low bigint; high bigint;
  low_value float8; high_value float8;
BEGIN
  IF h IS NULL OR cardinality(h) = 0 THEN RETURN NULL; END IF;
  FOR i IN array_lower(h, 1)..array_upper(h, 1) LOOP
    total := total + coalesce(h[i], 0);
  END LOOP;
  IF total = 0 THEN RETURN NULL; END IF;
  rank := q * (total - 1);
  low := floor(rank);
  high := ceil(rank);
  FOR i IN array_lower(h, 1)..array_upper(h, 1) LOOP
    seen := seen + coalesce(h[i], 0);
    IF low_value IS NULL AND seen > low THEN low_value := fs_hist_value(i); END IF;
    IF seen > high THEN high_value := fs_hist_value(i); EXIT; END IF;
  END LOOP;
  RETURN low_value + (rank - low) * (high_value - low_value);
END $$;

-- {{item: n}} maps summed, keeping the `keep` largest (ties by item): top lists folded in.
CREATE OR REPLACE FUNCTION fs_counts_add(a jsonb, b jsonb, keep int) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(jsonb_object_agg(key, n), '{{}}'::jsonb) FROM (
    SELECT key, sum(value::bigint) AS n
    FROM (SELECT * FROM jsonb_each_text(coalesce(a, '{{}}'::jsonb))
          UNION ALL SELECT * FROM jsonb_each_text(coalesce(b, '{{}}'::jsonb))) x
    GROUP BY key ORDER BY n DESC, key LIMIT keep) y
$$;
"""  # noqa: S608 - from constants

# Taking sessions back out of a rollup (an explicit delete): element-wise difference, and {item: n}
# maps subtracted, dropping items that reach zero.
SUBTRACT_SQL_FUNCTIONS = """
CREATE OR REPLACE FUNCTION fs_hist_sub(a int[], b int[]) RETURNS int[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  out int[] := a; lo int; hi int;
BEGIN
  IF a IS NULL OR b IS NULL OR cardinality(b) = 0 THEN RETURN a; END IF;
  FOR i IN array_lower(b, 1)..array_upper(b, 1) LOOP
    IF i BETWEEN array_lower(a, 1) AND array_upper(a, 1) THEN
      out[i] := greatest(coalesce(out[i], 0) - coalesce(b[i], 0), 0);
    END IF;
  END LOOP;
  -- Trimmed again, as every stored histogram is: equal counts, equal arrays.
  FOR i IN array_lower(out, 1)..array_upper(out, 1) LOOP
    IF out[i] > 0 THEN hi := i; IF lo IS NULL THEN lo := i; END IF; END IF;
  END LOOP;
  IF lo IS NULL THEN RETURN NULL; END IF;
  RETURN ('[' || lo || ':' || hi || ']=' || out[lo:hi]::text)::int[];
END $$;

CREATE OR REPLACE FUNCTION fs_counts_sub(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(jsonb_object_agg(key, n), '{}'::jsonb) FROM (
    SELECT x.key, x.value::bigint - coalesce((b ->> x.key)::bigint, 0) AS n
    FROM jsonb_each_text(coalesce(a, '{}'::jsonb)) x
  ) y WHERE n > 0
$$;
"""
DROP_SUBTRACT_SQL_FUNCTIONS = """
DROP FUNCTION IF EXISTS fs_counts_sub(jsonb, jsonb);
DROP FUNCTION IF EXISTS fs_hist_sub(int[], int[]);
"""

DROP_SQL_FUNCTIONS = """
DROP FUNCTION IF EXISTS fs_counts_add(jsonb, jsonb, int);
DROP FUNCTION IF EXISTS fs_hist_quantile(int[], float8);
DROP FUNCTION IF EXISTS fs_hist_from_buckets(int[], bigint[]);
DROP AGGREGATE IF EXISTS fs_hist_merge(int[]);
DROP FUNCTION IF EXISTS fs_hist_add(int[], int[]);
DROP FUNCTION IF EXISTS fs_hist_value(int);
DROP FUNCTION IF EXISTS fs_hist_bucket(float8);
"""
