-- The version of each read model's shape and meaning that its tables hold
-- (`Projector::version`). A runtime whose projector says a newer one rebuilds the
-- read model before running it, and one that knows only an older one refuses to run
-- it. Read models made before versions existed are version 1.
-- (Statements are split at semicolons: none in these comments.)
ALTER TABLE projection_checkpoints ADD COLUMN read_model_version BIGINT NOT NULL DEFAULT 1
