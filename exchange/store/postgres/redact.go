package postgres

import (
	"net/url"
	"regexp"
	"strings"
)

// redacted replaces every password that Redact removes.
const redacted = "xxxxx"

// kvPassword matches a password in a keyword/value connection string
// (password=secret, password = 'it\'s secret'); libpq ends an unquoted value
// at white space and lets a quoted one escape ' and \ with a backslash.
var kvPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)`)

// Redact returns dsn without its passwords, for logs and error messages: the
// password of a URL's user information, password and sslpassword query
// parameters, and password= in a keyword/value string. A URL it cannot parse
// is reduced to its scheme, since where the password sits is then unknown.
func Redact(dsn string) string {
	scheme, _, isURL := strings.Cut(dsn, "://")
	if !isURL || strings.ContainsAny(scheme, " =") {
		return kvPassword.ReplaceAllString(dsn, "${1}"+redacted)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return scheme + "://" + redacted
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), redacted)
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword") {
				q[k] = []string{redacted}
			}
		}
		u.RawQuery = q.Encode()
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// secrets returns the passwords a DSN holds, as written and as decoded, for
// scrubbing them out of messages that may echo them.
func secrets(dsn string, known ...string) []string {
	out := append([]string(nil), known...)
	if u, err := url.Parse(dsn); err == nil {
		if pw, ok := u.User.Password(); ok {
			out = append(out, pw, url.PathEscape(pw), url.QueryEscape(pw))
		}
		for k, vs := range u.Query() {
			if strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword") {
				out = append(out, vs...)
			}
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		v := strings.Trim(m[2], "'")
		out = append(out, v, strings.NewReplacer(`\'`, "'", `\\`, `\`).Replace(v))
	}
	return out
}

// scrub removes every secret from msg. It reports false when a secret is too
// short to remove safely (a one-letter password would take every such letter
// of the message with it); the caller then drops the message altogether.
func scrub(msg string, secrets []string) (string, bool) {
	for _, s := range secrets {
		if s == "" || !strings.Contains(msg, s) {
			continue
		}
		if len(s) < 4 {
			return "", false
		}
		msg = strings.ReplaceAll(msg, s, redacted)
	}
	return msg, true
}
