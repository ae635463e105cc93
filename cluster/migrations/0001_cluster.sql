-- wafer's desired state and membership, shared by every gateway and worker of a cluster.

-- Component bytes by sha256 digest: stored before any function refers to them, so a record
-- never names bytes that are not there.
CREATE TABLE components (
    digest text PRIMARY KEY,
    bytes bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);

-- One row per deployed function: the version every worker should serve. A deploy replaces the
-- row in one transaction; the route is unique, so two functions never own one path.
CREATE TABLE functions (
    name text PRIMARY KEY,
    version bigint NOT NULL,
    digest text NOT NULL REFERENCES components (digest),
    route text NOT NULL UNIQUE,
    manifest jsonb NOT NULL,
    deployed_at_ms bigint NOT NULL
);

-- Live workers hold a lease they renew about every second; a worker whose lease has run out is
-- not routed to.
CREATE TABLE workers (
    id text PRIMARY KEY,
    url text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz NOT NULL
);

-- Which version of each function each worker serves (or why it could not).
CREATE TABLE worker_functions (
    worker_id text NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
    name text NOT NULL,
    version bigint NOT NULL,
    ready boolean NOT NULL,
    error text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker_id, name)
);
