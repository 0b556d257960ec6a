-- Cron slots and per-repository exclusion.
--
-- A cron tick is recorded with its slot: the instant it was scheduled for (Unix ms, UTC), not
-- the moment it was noticed. (schedule, slot) is unique, so one tick fires at most once, even
-- across a restart within the same second.
ALTER TABLE jobs ADD COLUMN slot INTEGER;
CREATE UNIQUE INDEX jobs_schedule_slot ON jobs (schedule, slot)
    WHERE schedule IS NOT NULL AND slot IS NOT NULL;

-- Jobs that share a lane never run together: at most one of a lane is `running` or
-- `following` (a remote_mirror's lane is its repository). NULL: no exclusion.
ALTER TABLE jobs ADD COLUMN lane TEXT;
CREATE INDEX jobs_lane ON jobs (lane, status) WHERE lane IS NOT NULL;
UPDATE jobs SET lane = 'remote_mirror:' || json_extract(params, '$.repository_id')
    WHERE kind = 'remote_mirror' AND status <> 'rejected'
      AND json_valid(params) AND json_extract(params, '$.repository_id') IS NOT NULL;

-- One row per schedule that has fired or been paused: the last slot it fired (so the misfire
-- policy knows what was missed after downtime) and whether it is paused.
CREATE TABLE schedules (
    name        TEXT    PRIMARY KEY,
    last_slot   INTEGER,                     -- the latest slot fired (or passed while paused)
    paused      INTEGER NOT NULL DEFAULT 0,
    paused_by   TEXT,
    paused_at   INTEGER,
    updated_at  INTEGER NOT NULL
);
