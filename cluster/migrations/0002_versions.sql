-- Versions: each function keeps its immutable versions (by component digest) and says how its
-- calls split between them; workers report per version.

CREATE TABLE function_versions (
    name text NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    number bigint NOT NULL,
    digest text NOT NULL REFERENCES components (digest),
    route text NOT NULL,
    manifest jsonb NOT NULL,
    deployed_at_ms bigint NOT NULL,
    message text,
    PRIMARY KEY (name, number)
);
CREATE INDEX function_versions_digest ON function_versions (digest);

INSERT INTO function_versions (name, number, digest, route, manifest, deployed_at_ms)
    SELECT name, version, digest, route, manifest, deployed_at_ms FROM functions;

-- `route` stays on the function: the primary version's, unique across functions.
ALTER TABLE functions
    ADD COLUMN traffic jsonb,
    ADD COLUMN tags jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN next_version bigint,
    ADD COLUMN revision bigint;
UPDATE functions SET
    traffic = jsonb_build_object('split', jsonb_build_array(jsonb_build_array(version, 1))),
    next_version = version + 1,
    revision = version;
ALTER TABLE functions
    ALTER COLUMN traffic SET NOT NULL,
    ALTER COLUMN next_version SET NOT NULL,
    ALTER COLUMN revision SET NOT NULL,
    DROP COLUMN version,
    DROP COLUMN digest,
    DROP COLUMN manifest,
    DROP COLUMN deployed_at_ms;

-- A worker serves several versions of a function at once.
ALTER TABLE worker_functions DROP CONSTRAINT worker_functions_pkey;
ALTER TABLE worker_functions ADD PRIMARY KEY (worker_id, name, version);
