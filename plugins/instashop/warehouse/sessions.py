"""customer_sessions: what a session did (session_data) and how it ended (outcome).

Outcome rules, applied once a session has ended (its `end_time` is known):
- `conversion`: the session has at least one transaction;
- `cart_abandonment`: no transaction, but at least one product added to the cart;
- `bounce`: neither (the visitor only looked or searched).
A session that has not ended yet has no outcome. The rules are SQL over realtime_events, so the
consumer (for the sessions each batch touches) and the session_outcomes_backfill DAG (for a date
range) compute exactly the same thing.
"""

from __future__ import annotations

from datetime import datetime

from instashop.warehouse.pg_arrays import text_array

OUTCOMES = ("conversion", "cart_abandonment", "bounce")

# Aggregates of each session's events, merged into session_data, for the sessions in %(ids)s.
# Each session's events are read in a LATERAL subquery by its session_id: an index scan per
# partition whatever the statistics say. `e.session_id = ANY(ids)` over the whole table was planned
# as a sequential scan of every partition while the day's partition had no statistics yet (a fresh,
# fast-growing partition), so each refresh cost grew with the table. customer_sessions is read by
# its primary key (a join with the list was hashed against a scan of every session).
_REFRESH = """
WITH activity AS (
    SELECT q.session_id, a.*
    FROM unnest(%(ids)s::varchar[]) AS q (session_id)
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE e.event_type = 'user_behavior')                         AS page_views,
               coalesce(jsonb_agg(e.raw_data->>'page_type' ORDER BY e."timestamp", e.event_key)
                        FILTER (WHERE e.event_type = 'user_behavior'), '[]')                  AS pages,
               count(*) FILTER (WHERE e.event_type = 'search')                                AS searches,
               count(*) FILTER (WHERE e.event_type = 'cart_event' AND e.raw_data->>'action' = 'add')
                                                                                              AS cart_adds,
               count(*) FILTER (WHERE e.event_type = 'cart_event' AND e.raw_data->>'action' = 'remove')
                                                                                              AS cart_removes,
               count(*) FILTER (WHERE e.event_type = 'transaction')                           AS transactions,
               coalesce(sum(e.amount) FILTER (WHERE e.event_type = 'transaction'), 0)         AS revenue,
               max(e."timestamp")                                                             AS last_event
        FROM realtime_events e
        WHERE e.session_id = q.session_id
    ) a
),
computed AS (
    SELECT s.session_id,
           s.session_data
             || jsonb_build_object(
                  'page_views', coalesce(a.page_views, 0),
                  'pages', coalesce(a.pages, '[]'::jsonb),
                  'searches', coalesce(a.searches, 0),
                  'cart_adds', coalesce(a.cart_adds, 0),
                  'cart_removes', coalesce(a.cart_removes, 0),
                  'transactions', coalesce(a.transactions, 0),
                  'revenue', coalesce(a.revenue, 0)::text,
                  'last_event_time', to_char(a.last_event, 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                  'duration', CASE WHEN s.session_data ? 'end_time' AND s.session_data->>'end_time' IS NOT NULL
                                   THEN extract(epoch FROM ((s.session_data->>'end_time')::timestamp
                                                            - (s.session_data->>'start_time')::timestamp))
                              END
                ) AS session_data,
           CASE
             WHEN s.session_data->>'end_time' IS NULL THEN NULL
             WHEN coalesce(a.transactions, 0) > 0 THEN 'conversion'
             WHEN coalesce(a.cart_adds, 0) > 0 THEN 'cart_abandonment'
             ELSE 'bounce'
           END AS outcome
    FROM customer_sessions s
    LEFT JOIN activity a ON a.session_id = s.session_id
    WHERE s.session_id = ANY(%(ids)s::varchar[])
)
UPDATE customer_sessions s
SET session_data = c.session_data, outcome = c.outcome
FROM computed c
WHERE s.session_id = c.session_id
  AND (s.session_data IS DISTINCT FROM c.session_data OR s.outcome IS DISTINCT FROM c.outcome)
"""


_QUEUE = "INSERT INTO session_refresh_queue (session_id) SELECT unnest(%s::varchar[]) ON CONFLICT DO NOTHING"
_DEQUEUE = "DELETE FROM session_refresh_queue RETURNING session_id"


def queue_refresh(cur, session_ids: set[str]) -> None:
    """Queue sessions for the next `refresh_queued` (sql/dwh/007_session_refresh_queue.sql)."""
    if session_ids:
        cur.execute(_QUEUE, (text_array(sorted(session_ids)),))


def refresh_queued(cur, session_ids: set[str]) -> int:
    """Recompute these sessions and every queued one, emptying the queue; returns the rows changed."""
    cur.execute(_DEQUEUE)
    queued = {session_id for (session_id,) in cur.fetchall()}
    return refresh_sessions(cur, sorted(session_ids | queued))


def refresh_sessions(cur, session_ids: list[str]) -> int:
    """Recompute session_data and outcome of these sessions; returns the rows changed."""
    if not session_ids:
        return 0
    cur.execute(_REFRESH, {"ids": text_array(session_ids)})
    return cur.rowcount


def refresh_sessions_between(cur, start: datetime, end: datetime, chunk: int = 5000) -> int:
    """Recompute every session whose timestamp is in [start, end); returns the rows changed."""
    cur.execute('SELECT session_id FROM customer_sessions WHERE "timestamp" >= %s AND "timestamp" < %s', (start, end))
    session_ids = [session_id for (session_id,) in cur.fetchall()]
    return sum(refresh_sessions(cur, session_ids[i : i + chunk]) for i in range(0, len(session_ids), chunk))
