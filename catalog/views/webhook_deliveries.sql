-- The webhook delivery log: every state a delivery went through (pending when the event was queued,
-- then one row per attempt: retrying, delivered or failed), with the HTTP status and error.
SELECT delivery_id, webhook_id, entity, action, status, attempt, response_status, error, recorded_at, payload_json
FROM lake.webhook_deliveries
