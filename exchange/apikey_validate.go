package exchange

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds of the text an API key carries. The fields come from the verified
// CI token (sub, iss, rendered claims) and the policy; a value no store can
// hold must be refused before the key joins a group commit, where it would
// fail the transaction of every other caller in the group.
const (
	// maxKeyText caps each string of an API key, in bytes.
	maxKeyText = 4096
	// maxKeyList caps the audiences, the scopes and the metadata entries.
	maxKeyList = 256
)

// errAPIKeyText refuses an API key whose text cannot be stored.
var errAPIKeyText = errors.New("exchange: API key text not storable")

// validateKeyText checks every text field of k: valid UTF-8, no NUL (which
// PostgreSQL text refuses), at most maxKeyText bytes, lists of at most
// maxKeyList entries. Errors wrap errAPIKeyText.
func validateKeyText(k *APIKey) error {
	for _, f := range []struct{ name, v string }{{"subject", k.Subject}, {"issuer", k.Issuer}, {"policy", k.Policy}} {
		if err := checkKeyText(f.v); err != nil {
			return fmt.Errorf("%w: %s: %w", errAPIKeyText, f.name, err)
		}
	}
	for _, l := range []struct {
		name string
		vs   []string
	}{{"audience", k.Audience}, {"scopes", k.Scopes}} {
		if len(l.vs) > maxKeyList {
			return fmt.Errorf("%w: %s: %d entries, at most %d", errAPIKeyText, l.name, len(l.vs), maxKeyList)
		}
		for _, v := range l.vs {
			if err := checkKeyText(v); err != nil {
				return fmt.Errorf("%w: %s: %w", errAPIKeyText, l.name, err)
			}
		}
	}
	if len(k.Metadata) > maxKeyList {
		return fmt.Errorf("%w: metadata: %d entries, at most %d", errAPIKeyText, len(k.Metadata), maxKeyList)
	}
	for name, v := range k.Metadata {
		if err := checkKeyText(name); err != nil {
			return fmt.Errorf("%w: metadata name: %w", errAPIKeyText, err)
		}
		if err := checkKeyText(v); err != nil {
			return fmt.Errorf("%w: metadata %q: %w", errAPIKeyText, name, err)
		}
	}
	return nil
}

func checkKeyText(s string) error {
	switch {
	case len(s) > maxKeyText:
		return fmt.Errorf("%d bytes, at most %d", len(s), maxKeyText)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		return errors.New("contains NUL")
	}
	return nil
}
