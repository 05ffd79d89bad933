-- Several daemons may drain one store: a dispatcher claims due deliveries
-- (claimed_by, until claim_until) before it POSTs them, so no other one sends
-- them too. A claim whose holder died lapses at claim_until (at-least-once).
ALTER TABLE webhook_delivery ADD COLUMN claimed_by TEXT;
ALTER TABLE webhook_delivery ADD COLUMN claim_until TEXT;
