-- A delivery's targets kept waiting (offline edge, outside a window): a new live-event stream
-- counts them as it opens, and with this index that costs the waiting targets, not all of them
-- (a hundred watchers opening on a 10,000-target delivery scanned a million rows).
CREATE INDEX delivery_targets_waiting_in_delivery ON delivery_targets (delivery_id)
    WHERE status = 'pending' AND not_before IS NOT NULL;
