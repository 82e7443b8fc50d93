-- A rebuild's progress is the number of events it has replayed, not a position:
-- positions are sparse (on PostgreSQL, transaction ids shifted by 16 bits), so they
-- cannot be set against the events in all.
ALTER TABLE projection_checkpoints RENAME COLUMN rebuild_position TO rebuild_done
