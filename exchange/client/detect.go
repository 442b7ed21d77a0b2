package client

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// Source kinds, the values of SourceOptions.Kind and of `tokenbroker
// exchange --id-token-source`.
const (
	SourceAuto      = "auto"
	SourceGitHub    = "github"
	SourceGitLab    = "gitlab"
	SourceCircleCI  = "circleci"
	SourceBuildkite = "buildkite"
	SourceBitbucket = "bitbucket"
	SourceAzure     = "azure"
	SourceFile      = "file"
	SourceEnv       = "env"
)

// SourceKinds lists every kind but auto, in detection order.
var SourceKinds = []string{SourceGitHub, SourceGitLab, SourceCircleCI, SourceBuildkite, SourceBitbucket, SourceAzure, SourceFile, SourceEnv}

// DefaultIDTokenVariable is the variable the gitlab and env sources read when
// SourceOptions.Variable is empty. In GitLab CI declare it with
// `id_tokens: { TOKENBROKER_ID_TOKEN: { aud: <broker URL> } }`.
const DefaultIDTokenVariable = "TOKENBROKER_ID_TOKEN"

// detection maps the variable each CI system always sets to its kind, in
// the order they are checked.
var detection = []struct{ variable, kind string }{
	{"GITHUB_ACTIONS", SourceGitHub},
	{"GITLAB_CI", SourceGitLab},
	{"CIRCLECI", SourceCircleCI},
	{"BUILDKITE", SourceBuildkite},
	{"BITBUCKET_BUILD_NUMBER", SourceBitbucket},
	{"TF_BUILD", SourceAzure},
}

// SourceOptions selects and configures an IDTokenSource.
type SourceOptions struct {
	// Kind is one of SourceKinds, or SourceAuto / "" to detect the CI system
	// from the environment.
	Kind string
	// Variable is the environment variable of the gitlab and env kinds
	// (default DefaultIDTokenVariable).
	Variable string
	// File is the path of the file kind.
	File string
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// HTTPClient is used by the github and azure kinds; nil means a client
	// with a 30s timeout that follows no redirects.
	HTTPClient *http.Client
}

// DetectKind returns the kind of the CI system the environment belongs to,
// or "" when it is none that is known.
func DetectKind(getenv func(string) string) string {
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, d := range detection {
		if getenv(d.variable) != "" {
			return d.kind
		}
	}
	return ""
}

// NewIDTokenSource returns the source opts select, and its kind.
func NewIDTokenSource(opts SourceOptions) (IDTokenSource, string, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	kind := strings.ToLower(opts.Kind)
	if kind == "" || kind == SourceAuto {
		switch {
		case opts.File != "":
			kind = SourceFile
		default:
			kind = DetectKind(getenv)
		}
		if kind == "" {
			return nil, "", errors.New("client: no CI system detected (none of GITHUB_ACTIONS, GITLAB_CI, CIRCLECI, BUILDKITE, BITBUCKET_BUILD_NUMBER, TF_BUILD is set); choose an ID token source: " + strings.Join(SourceKinds, ", "))
		}
	}
	variable := opts.Variable
	if variable == "" {
		variable = DefaultIDTokenVariable
	}
	var src IDTokenSource
	switch kind {
	case SourceGitHub:
		src = &GitHubActions{RequestURL: getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), RequestToken: getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN"), HTTPClient: opts.HTTPClient}
	case SourceGitLab:
		src = &Env{Name: "gitlab", Variables: []string{variable}, Getenv: getenv}
	case SourceCircleCI:
		// V2 carries the project's VCS details; V1 is the fallback.
		src = &Env{Name: "circleci", Variables: []string{"CIRCLE_OIDC_TOKEN_V2", "CIRCLE_OIDC_TOKEN"}, Getenv: getenv}
	case SourceBuildkite:
		src = &Buildkite{}
	case SourceBitbucket:
		src = &Env{Name: "bitbucket", Variables: []string{"BITBUCKET_STEP_OIDC_TOKEN"}, Getenv: getenv}
	case SourceAzure:
		src = &AzureDevOps{RequestURI: getenv("SYSTEM_OIDCREQUESTURI"), AccessToken: getenv("SYSTEM_ACCESSTOKEN"), HTTPClient: opts.HTTPClient}
	case SourceFile:
		if opts.File == "" {
			return nil, "", errors.New("client: the file ID token source needs a file path")
		}
		src = &File{Path: opts.File}
	case SourceEnv:
		src = &Env{Name: "env", Variables: []string{variable}, Getenv: getenv}
	default:
		return nil, "", fmt.Errorf("client: unknown ID token source %q (want %s or %s)", opts.Kind, SourceAuto, strings.Join(SourceKinds, ", "))
	}
	return src, kind, nil
}

// Fresh reports whether kind mints a new ID token (a new jti) on every call,
// so that each exchange can pass a single_use policy.
func Fresh(kind string) bool {
	switch kind {
	case SourceGitHub, SourceAzure, SourceBuildkite:
		return true
	default:
		return false
	}
}
