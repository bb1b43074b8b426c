-- One RS256 key pair per project for `auth: jwt` edges. `seq` counts the project's keys; the key
-- that signs is the newest whose `signing_from` has come (a rotated key starts signing after the
-- overlap, once operators installed its public half). The private key is sealed like edge secrets.
CREATE TABLE project_jwt_keys (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    file_name TEXT NOT NULL,
    private_sealed TEXT NOT NULL,
    public_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    signing_from BIGINT NOT NULL,
    PRIMARY KEY (project_id, seq)
);

-- Failed sign-ins per subject (`user:<name>`, `device:<name>:<hash>`, `addr:<ip>`), shared by
-- every replica. The count is taken before the password is checked, so parallel guesses cannot
-- slip past the limit. Rows older than the window are deleted as sign-ins come.
CREATE TABLE login_throttle (
    subject TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    last_attempt BIGINT NOT NULL,
    previous_attempt BIGINT NOT NULL DEFAULT 0,
    throttled BIGINT NOT NULL DEFAULT 0,
    throttled_audited_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX login_throttle_last ON login_throttle (last_attempt);
