package devissuer

import (
	"crypto/rand"
	"fmt"
	"maps"
	"strings"
)

// claimNames are the GitHub Actions claims that POST /token accepts as
// overrides (besides audience).
var claimNames = []string{
	"sub", "ref", "ref_type", "ref_protected", "sha",
	"repository", "repository_id", "repository_owner", "repository_owner_id",
	"repository_visibility", "run_id", "run_number", "run_attempt",
	"runner_environment", "actor", "actor_id", "workflow", "workflow_ref",
	"workflow_sha", "head_ref", "base_ref", "event_name", "environment",
	"environment_node_id", "job_workflow_ref", "job_workflow_sha",
	"enterprise", "enterprise_id",
}

// defaultSHA is the commit the default token was built from.
const defaultSHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4"

// claimsFor returns the claims of a token: the defaults, the overrides, the
// claims derived from them, and nil overrides removed.
func (i *Issuer) claimsFor(overrides map[string]any) (map[string]any, error) {
	jti, err := randomID()
	if err != nil {
		return nil, err
	}
	now := i.opts.Now().Unix()
	c := map[string]any{
		"iss":                   i.opts.URL,
		"aud":                   "https://github.com/octo-org",
		"jti":                   jti,
		"iat":                   now,
		"nbf":                   now,
		"exp":                   now + int64(TokenLifetime.Seconds()),
		"ref":                   "refs/heads/main",
		"ref_protected":         "true",
		"sha":                   defaultSHA,
		"repository":            "octo-org/app",
		"repository_id":         "7654321",
		"repository_owner_id":   "1234567",
		"repository_visibility": "private",
		"run_id":                "9876543210",
		"run_number":            "42",
		"run_attempt":           "1",
		"runner_environment":    "github-hosted",
		"actor":                 "octocat",
		"actor_id":              "583231",
		"workflow":              "deploy",
		"workflow_sha":          defaultSHA,
		"job_workflow_sha":      defaultSHA,
		"head_ref":              "",
		"base_ref":              "",
		"event_name":            "push",
	}
	maps.Copy(c, overrides)
	derive(c, overrides)
	for k, v := range overrides {
		if v == nil {
			delete(c, k)
		}
	}
	return c, nil
}

// derive fills the claims GitHub computes from others, unless overridden.
func derive(c, overrides map[string]any) {
	repo, _ := c["repository"].(string)
	ref, _ := c["ref"].(string)
	set := func(name string, v any) {
		if _, given := overrides[name]; !given {
			c[name] = v
		}
	}
	owner, _, _ := strings.Cut(repo, "/")
	set("repository_owner", owner)
	if strings.HasPrefix(ref, "refs/tags/") {
		set("ref_type", "tag")
	} else {
		set("ref_type", "branch")
	}
	workflowRef := fmt.Sprintf("%s/.github/workflows/deploy.yml@%s", repo, ref)
	set("workflow_ref", workflowRef)
	set("job_workflow_ref", workflowRef)

	// Subject formats: https://docs.github.com/en/actions/security-for-github-actions/security-hardening-your-deployments/about-security-hardening-with-openid-connect
	env, _ := c["environment"].(string)
	event, _ := c["event_name"].(string)
	switch {
	case env != "":
		set("sub", fmt.Sprintf("repo:%s:environment:%s", repo, env))
	case event == "pull_request":
		set("sub", fmt.Sprintf("repo:%s:pull_request", repo))
	default:
		set("sub", fmt.Sprintf("repo:%s:ref:%s", repo, ref))
	}
}

// randomID returns 128 random bits as a UUID-shaped string, as GitHub's jti.
func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("devissuer: random: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}
