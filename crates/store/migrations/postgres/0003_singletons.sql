-- Periodic work that must run once across all replicas takes a lease here.
CREATE TABLE singletons (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
