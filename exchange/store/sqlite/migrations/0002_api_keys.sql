-- 0002: API keys and revoked JWTs.
-- An API key is stored by its SHA-256 only; id is the short non-secret key id.
-- remaining is NULL for a key without a use limit.

CREATE TABLE api_keys (
	hash       BLOB    NOT NULL PRIMARY KEY,
	id         TEXT    NOT NULL UNIQUE,
	subject    TEXT    NOT NULL,
	issuer     TEXT    NOT NULL,
	policy     TEXT    NOT NULL,
	audience   TEXT    NOT NULL,
	scopes     TEXT    NOT NULL,
	metadata   TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	uses       INTEGER NOT NULL,
	remaining  INTEGER,
	revoked_at INTEGER
) STRICT, WITHOUT ROWID;

-- Listings filter by subject or policy, newest first; purging by expiry.
CREATE INDEX api_keys_subject    ON api_keys (subject, created_at);
CREATE INDEX api_keys_policy     ON api_keys (policy, created_at);
CREATE INDEX api_keys_created_at ON api_keys (created_at);
CREATE INDEX api_keys_expires_at ON api_keys (expires_at);

CREATE TABLE revoked_tokens (
	jti        TEXT    NOT NULL PRIMARY KEY,
	expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
