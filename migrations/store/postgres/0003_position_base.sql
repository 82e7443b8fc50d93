-- Positions that survive a restore. An event's position is
-- ((xid + shift) << 16) + its index in its append, and readers of $all stop below
-- ((xmin of their snapshot + shift) << 16). `shift` is 0 until the transaction-id
-- counter is found behind the stored positions (a pg_dump/restore into a new
-- cluster, a logical-replication move, pg_resetwal): then the store raises it, under
-- an ACCESS EXCLUSIVE lock on `events`, so that every new position lies above every
-- stored one. It never goes down. See ARCHITECTURE.md, "No skipped events".
CREATE TABLE ordo_position_base (
    id    integer PRIMARY KEY CHECK (id = 1),
    shift bigint  NOT NULL CHECK (shift >= 0)
);
INSERT INTO ordo_position_base (id, shift) VALUES (1, 0);
