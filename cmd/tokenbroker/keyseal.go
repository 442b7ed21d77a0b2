package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// kekEnv is the environment variable of signing.key_encryption_key_file,
// named in error messages.
const kekEnv = "TOKENBROKER_SIGNING_KEY_ENCRYPTION_KEY_FILE"

// newKeyManager opens the signing keys of st as configured: sealed with the
// key encryption key of signing.key_encryption_key_file when it is set.
// warn receives what an admin should act on but that does not stop the
// broker (a loosely protected KEK file, keys still stored unencrypted).
func newKeyManager(ctx context.Context, cfg *Config, st exchange.SigningKeyStore, warn func(string)) (*exchange.KeyManager, error) {
	sealer, err := cfg.keySealer(warn)
	if err != nil {
		return nil, err
	}
	var opts []exchange.KeyManagerOption
	if sealer != nil {
		opts = append(opts, exchange.WithKeySealer(sealer))
	}
	km, err := exchange.NewKeyManager(ctx, st, cfg.Signing.Algorithm, nil, opts...)
	switch {
	case errors.Is(err, exchange.ErrKeySealed):
		return nil, fmt.Errorf("%w; set signing.key_encryption_key_file (or %s) to its key encryption key file", err, kekEnv)
	case errors.Is(err, exchange.ErrUnknownKEK):
		return nil, fmt.Errorf("%w; set signing.key_encryption_key_file to the key encryption key that sealed it, "+
			"or list that one in signing.previous_key_encryption_key_files", err)
	case err != nil:
		return nil, err
	}
	if sealer != nil {
		for _, k := range km.Keys() {
			if !k.Encrypted {
				warn(fmt.Sprintf("signing key %s is stored unencrypted (it predates signing.key_encryption_key_file); "+
					"it ages out of the store after the next rotation (tokenbroker keys rotate)", k.ID))
			}
		}
	}
	return km, nil
}

// keySealer reads the key encryption keys of signing: into a sealer; nil
// when signing.key_encryption_key_file is not set.
func (c *Config) keySealer(warn func(string)) (*exchange.KeySealer, error) {
	if c.Signing.KeyEncryptionKeyFile == "" {
		if len(c.Signing.PreviousKeyEncryptionKeyFiles) > 0 {
			return nil, fmt.Errorf("%s: signing.previous_key_encryption_key_files is set without signing.key_encryption_key_file", c.file)
		}
		return nil, nil
	}
	cur, err := readKEKFile(c.Signing.KeyEncryptionKeyFile, warn)
	if err != nil {
		return nil, fmt.Errorf("%s: signing.key_encryption_key_file: %w", c.file, err)
	}
	var prev [][]byte
	for i, path := range c.Signing.PreviousKeyEncryptionKeyFiles {
		k, err := readKEKFile(path, warn)
		if err != nil {
			return nil, fmt.Errorf("%s: signing.previous_key_encryption_key_files[%d]: %w", c.file, i, err)
		}
		prev = append(prev, k)
	}
	return exchange.NewKeySealer(cur, prev...)
}

// readKEKFile reads a key encryption key file. Like ssh with a private key,
// it refuses a file every user may read, and one that anyone but its owner
// may write (whoever can replace the KEK learns every key sealed after). A
// group-readable file only warns: it is how a container platform hands a
// secret to a non-root process (a Kubernetes secret volume with fsGroup).
func readKEKFile(path string, warn func(string)) ([]byte, error) {
	// Open follows symlinks (as secret volumes use them); the mode checked
	// is that of the file read, not of a path swapped in between.
	f, err := os.Open(path) //nolint:gosec // G304: the admin names the KEK file; reading it is the point
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	switch perm := fi.Mode().Perm(); {
	case perm&0o022 != 0:
		return nil, fmt.Errorf("%s is writable by other users (mode %#o): chmod 600 it", path, perm)
	case perm&0o004 != 0:
		return nil, fmt.Errorf("%s is readable by every user (mode %#o): chmod 600 it (640 for a group the broker runs in)", path, perm)
	case perm&0o040 != 0:
		warn(fmt.Sprintf("key encryption key file %s is readable by its group (mode %#o); chmod 600 it unless the broker reads it through that group", path, perm))
	}
	// A KEK file is 44 bytes of base64 or 32 raw ones: read little more.
	data, err := io.ReadAll(io.LimitReader(f, 4<<10))
	if err != nil {
		return nil, err
	}
	return exchange.ParseKEK(data)
}
