-- One object, one row: an S3 object (user and key) is stored in exactly one `items` row, and
-- the processor finds an object's row (and so its id) again by its key on every redelivery.
-- The id rule for two objects with the same stem is in collections_core.events.item_candidates.
CREATE UNIQUE INDEX IF NOT EXISTS items_user_original_key_idx ON items (user_id, original_key);
