-- 0002: API keys and revoked JWTs.
-- An API key is stored by its SHA-256 only; id is the short non-secret key id.
-- remaining is NULL for a key without a use limit.

CREATE TABLE api_keys (
	hash       bytea  NOT NULL PRIMARY KEY,
	id         text   NOT NULL UNIQUE,
	subject    text   NOT NULL,
	issuer     text   NOT NULL,
	policy     text   NOT NULL,
	audience   jsonb  NOT NULL,
	scopes     jsonb  NOT NULL,
	metadata   jsonb  NOT NULL,
	created_at bigint NOT NULL,
	expires_at bigint NOT NULL,
	uses       bigint NOT NULL,
	remaining  bigint,
	revoked_at bigint
);

-- Listings filter by subject or policy, newest first; purging by expiry.
CREATE INDEX api_keys_subject    ON api_keys (subject, created_at);
CREATE INDEX api_keys_policy     ON api_keys (policy, created_at);
CREATE INDEX api_keys_created_at ON api_keys (created_at);
CREATE INDEX api_keys_expires_at ON api_keys (expires_at);

CREATE TABLE revoked_tokens (
	jti        text   NOT NULL PRIMARY KEY,
	expires_at bigint NOT NULL
);

CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
