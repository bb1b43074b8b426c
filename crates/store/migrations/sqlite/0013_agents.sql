-- Agent mode. `transport` is `http` (edgefleet calls the endpoint) or `agent` (an agent beside the
-- gateway makes the calls, reached through the MQTT broker); `agent_id` is the agent's id, unique
-- across the server since it names the agent's topics and broker user. `agent_secret` is the
-- broker password's hash (PBKDF2-SHA512 in Mosquitto's `$7$` form), NULL until credentials are
-- issued.
ALTER TABLE edge_services ADD COLUMN transport TEXT NOT NULL DEFAULT 'http';
ALTER TABLE edge_services ADD COLUMN agent_id TEXT;
ALTER TABLE edge_services ADD COLUMN agent_secret TEXT;
CREATE UNIQUE INDEX edge_services_agent_id ON edge_services (agent_id) WHERE agent_id IS NOT NULL;
-- A target keeps how its edge was reached when the delivery started, like its endpoint.
ALTER TABLE delivery_targets ADD COLUMN transport TEXT NOT NULL DEFAULT 'http';
ALTER TABLE delivery_targets ADD COLUMN agent_id TEXT;
-- One Ed25519 command-signing key per project; agents hold the public half.
CREATE TABLE project_command_keys (
    project_id TEXT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    private_sealed TEXT NOT NULL,
    public_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
