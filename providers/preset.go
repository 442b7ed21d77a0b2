package providers

import "slices"

// Preset describes a CI provider as data: adding a provider is adding a row
// to the presets table, not writing code.
type Preset struct {
	// Name is the value of a provider's `preset:` key.
	Name string
	// Description names the CI system.
	Description string
	// Issuers are the shapes of the provider's iss, the first being the
	// default. A provider's params select the shape whose placeholders they
	// fill exactly; empty (generic) means the configuration must name the
	// issuer.
	Issuers []IssuerTemplate
	// Shared is true when many tenants share the issuer or its signing
	// keys, so trust policies on it must pin the tenant by one of
	// TenantClaims.
	Shared bool
	// TenantClaims are the immutable id claims that pin a tenant (an
	// organisation, a project), strongest first.
	TenantClaims []string
	// RepositoryClaims are the claims that pin one repository, project or
	// pipeline (checked by the any_repository lint).
	RepositoryClaims []string
	// SubjectFormats document the shapes of sub, for policy authors.
	SubjectFormats []string
	// Claims are the claims the provider is known to send, with their types;
	// nil when unknown (generic).
	Claims map[string]ClaimType
	// Algorithms are the signing algorithms accepted by default.
	Algorithms []string
	// TokenSource documents where a pipeline gets its ID token.
	TokenSource string
	// Audience documents how the pipeline chooses the token's aud.
	Audience string
	// Guardrails are deny rules applied to every token of this issuer
	// (serve and `tokenbroker policy` pass them to the policy loader); a
	// trust policy opts out of one only by naming its Allow key.
	Guardrails []DefaultGuardrail
	// Notes are the provider's traps, for policy authors.
	Notes []string
}

// Preset names.
const (
	// PresetGitHubActions is GitHub Actions (github.com, GHE.com, GHES).
	PresetGitHubActions = "github-actions"
	// PresetGitLab is GitLab CI/CD (gitlab.com or self-managed).
	PresetGitLab = "gitlab"
	// PresetCircleCI is CircleCI.
	PresetCircleCI = "circleci"
	// PresetBuildkite is Buildkite.
	PresetBuildkite = "buildkite"
	// PresetBitbucketPipelines is Bitbucket Pipelines.
	PresetBitbucketPipelines = "bitbucket-pipelines"
	// PresetAzureDevOps is Azure DevOps Pipelines (Azure DevOps issuer).
	PresetAzureDevOps = "azure-devops"
	// PresetGoogle is Google service-account ID tokens (Cloud Build, GCE, ...).
	PresetGoogle = "google"
	// PresetTerraformCloud is HCP Terraform (Terraform Cloud) and Terraform Enterprise.
	PresetTerraformCloud = "terraform-cloud"
	// PresetGeneric is any OIDC issuer named by the configuration.
	PresetGeneric = "generic"
)

// presets is the table of known CI providers. A later provider is one more
// row; claim names follow each provider's documentation.
var presets = []Preset{
	{
		Name:        PresetGitHubActions,
		Description: "GitHub Actions",
		Issuers: []IssuerTemplate{
			{"https://token.actions.githubusercontent.com", "github.com"},
			{"https://token.actions.githubusercontent.com/{enterprise}", "GHE.com / enterprise-specific issuer (params: enterprise)"},
			{"https://{host}/_services/token", "GitHub Enterprise Server (params: host)"},
		},
		Shared:           true,
		TenantClaims:     []string{"repository_owner_id", "repository_id"},
		RepositoryClaims: []string{"repository_id", "repository"},
		SubjectFormats: []string{
			"repo:OWNER/REPO:ref:REF",
			"repo:OWNER/REPO:environment:ENVIRONMENT",
			"repo:OWNER/REPO:pull_request",
			"repo:OWNER@OWNER_ID/REPO@REPO_ID:ref:REF (immutable form)",
			"repo:OWNER@OWNER_ID/REPO@REPO_ID:environment:ENVIRONMENT (immutable form)",
			"repo:OWNER@OWNER_ID/REPO@REPO_ID:pull_request (immutable form)",
		},
		// GitHub sends every claim but the registered numeric dates as a
		// string, including ids, run numbers and ref_protected ("true").
		Claims: withRegistered(
			"ref", "ref_type", "ref_protected", "sha",
			"repository", "repository_id", "repository_owner", "repository_owner_id",
			"repository_visibility", "run_id", "run_number", "run_attempt",
			"runner_environment", "actor", "actor_id", "workflow", "workflow_ref",
			"workflow_sha", "head_ref", "base_ref", "event_name", "environment",
			"environment_node_id", "job_workflow_ref", "job_workflow_sha",
			"enterprise", "enterprise_id",
		),
		Algorithms:  []string{"RS256"},
		TokenSource: "a job with `permissions: id-token: write` requests it from $ACTIONS_ID_TOKEN_REQUEST_URL (with &audience=...) using $ACTIONS_ID_TOKEN_REQUEST_TOKEN as bearer",
		Audience:    "chosen by the job: &audience= on the request URL (default: the owner's URL, https://github.com/OWNER)",
		Guardrails: []DefaultGuardrail{{
			Name:   "no-pull-request-target",
			Claims: map[string]string{"event_name": "pull_request_target"},
			Allow:  "pull_request_target",
			Why:    "pull_request_target runs with the base repository's privileges on code from forks",
		}},
		Notes: []string{
			"sub switches to the immutable form (OWNER@OWNER_ID/REPO@REPO_ID) for repositories created or renamed from 2026-07-15, or opted in; match repository_id and ref/environment claims instead of sub, or accept both forms",
			"an organisation may customise the sub template; never rely on sub alone, pin repository_owner_id",
		},
	},
	{
		Name:        PresetGitLab,
		Description: "GitLab CI/CD",
		Issuers: []IssuerTemplate{
			{"https://gitlab.com", "gitlab.com"},
			{"https://{host}", "GitLab Self-Managed or Dedicated (params: host)"},
		},
		Shared:           true,
		TenantClaims:     []string{"namespace_id", "project_id"},
		RepositoryClaims: []string{"project_id", "project_path"},
		SubjectFormats:   []string{"project_path:GROUP/PROJECT:ref_type:branch|tag:ref:REF"},
		Claims: typed(withRegistered(
			"namespace_id", "namespace_path", "project_id", "project_path",
			"user_id", "user_login", "user_email", "user_access_level",
			"pipeline_id", "pipeline_source", "job_id", "ref", "ref_type", "ref_path",
			"ref_protected", "environment", "environment_protected", "deployment_tier",
			"environment_action", "runner_environment", "sha", "ci_config_ref_uri",
			"ci_config_sha", "project_visibility",
		), ClaimNumber, "runner_id"),
		Algorithms:  []string{"RS256"},
		TokenSource: "the job's `id_tokens:` keyword puts it in the named CI/CD variable",
		Audience:    "`aud:` under the job's id_tokens entry",
		Notes: []string{
			"a project may customise sub (ci_id_token_sub_claim_components); pin namespace_id and project_id",
			"ref has no refs/heads/ prefix: ref_type tells branch from tag",
		},
	},
	{
		Name:        PresetCircleCI,
		Description: "CircleCI",
		Issuers: []IssuerTemplate{
			{"https://oidc.circleci.com/org/{org_id}", "one issuer per organisation (params: org_id)"},
		},
		Shared:           true,
		TenantClaims:     []string{"oidc.circleci.com/org-id"},
		RepositoryClaims: []string{"oidc.circleci.com/project-id"},
		SubjectFormats: []string{
			"org/ORG_ID/project/PROJECT_ID/user/USER_ID ($CIRCLE_OIDC_TOKEN)",
			"org/ORG_ID/project/PROJECT_ID/user/USER_ID/vcs-origin/VCS_ORIGIN/vcs-ref/VCS_REF ($CIRCLE_OIDC_TOKEN_V2)",
		},
		Claims: typed(typed(withRegistered(
			"oidc.circleci.com/org-id", "oidc.circleci.com/project-id",
			"oidc.circleci.com/vcs-origin", "oidc.circleci.com/vcs-ref",
			"oidc.circleci.com/pipeline-id", "oidc.circleci.com/pipeline-definition-id",
		), ClaimList, "oidc.circleci.com/context-ids"), ClaimBool, "oidc.circleci.com/ssh-rerun"),
		Algorithms:  []string{"RS256"},
		TokenSource: "$CIRCLE_OIDC_TOKEN / $CIRCLE_OIDC_TOKEN_V2 in jobs that use a context; `circleci run oidc get --claims '{\"aud\":\"...\"}'` for another audience",
		Audience:    "the organisation id by default; a custom aud through `circleci run oidc get`",
		Guardrails: []DefaultGuardrail{{
			Name:   "no-ssh-rerun",
			Claims: map[string]string{"oidc.circleci.com/ssh-rerun": "true"},
			Allow:  "ssh_rerun",
			Why:    "an SSH rerun gives a person a shell holding the job's token",
		}},
		Notes: []string{
			"forked pull requests get tokens only if 'Pass secrets to builds from forked pull requests' is on",
			"vcs-origin and vcs-ref are absent for pipelines triggered by inbound webhooks",
		},
	},
	{
		Name:             PresetBuildkite,
		Description:      "Buildkite",
		Issuers:          []IssuerTemplate{{"https://agent.buildkite.com", "buildkite.com"}},
		Shared:           true,
		TenantClaims:     []string{"organization_id"},
		RepositoryClaims: []string{"pipeline_id", "pipeline_slug"},
		SubjectFormats:   []string{"organization:ORG_SLUG:pipeline:PIPELINE_SLUG:ref:REF:commit:COMMIT:step:STEP_KEY"},
		Claims: typed(withRegistered(
			"organization_slug", "organization_id", "pipeline_slug", "pipeline_id",
			"build_branch", "build_tag", "build_commit", "build_source", "step_key",
			"job_id", "agent_id", "runner_environment",
		), ClaimNumber, "build_number"),
		Algorithms:  []string{"RS256"},
		TokenSource: "`buildkite-agent oidc request-token --audience AUD --claim organization_id,pipeline_id`",
		Audience:    "--audience (default: https://buildkite.com/ORG_SLUG)",
		Notes: []string{
			"organization_id and pipeline_id are optional claims: request them with --claim, slugs are mutable",
			"build_tag and step_key may be null",
		},
	},
	{
		Name:        PresetBitbucketPipelines,
		Description: "Bitbucket Pipelines",
		Issuers: []IssuerTemplate{
			{"https://api.bitbucket.org/2.0/workspaces/{workspace}/pipelines-config/identity/oidc", "one issuer per workspace (params: workspace)"},
		},
		Shared:           true,
		TenantClaims:     []string{"workspaceUuid"},
		RepositoryClaims: []string{"repositoryUuid"},
		SubjectFormats: []string{
			"{REPOSITORY_UUID}:{STEP_UUID}",
			"{REPOSITORY_UUID}:{DEPLOYMENT_ENVIRONMENT_UUID}:{STEP_UUID} (deployment steps)",
		},
		Claims: withRegistered(
			"accountUuid", "workspaceUuid", "repositoryUuid", "pipelineUuid", "stepUuid",
			"deploymentEnvironmentUuid", "branchName",
		),
		Algorithms:  []string{"RS256"},
		TokenSource: "$BITBUCKET_STEP_OIDC_TOKEN in a step with `oidc: true`",
		Audience:    "fixed per workspace: ari:cloud:bitbucket::workspace/WORKSPACE_UUID",
		Notes: []string{
			"the issuer names the workspace by its (renamable) slug: pin workspaceUuid",
			"sub changes with every step: match repositoryUuid and deploymentEnvironmentUuid, not sub",
			"UUIDs are brace-wrapped: {9a8b...}",
		},
	},
	{
		Name:        PresetAzureDevOps,
		Description: "Azure DevOps Pipelines",
		Issuers: []IssuerTemplate{
			{"https://vstoken.dev.azure.com/{org_id}", "one issuer per organisation (params: org_id)"},
		},
		// The issuer is per organisation, but its signing keys are shared by
		// every organisation: the org_id claim is always pinned.
		Shared:           true,
		TenantClaims:     []string{"org_id"},
		RepositoryClaims: []string{"def_id", "rpo_id", "sc_id"},
		SubjectFormats: []string{
			"p://ORG/PROJECT/PIPELINE (pipeline token)",
			"sc://ORG/PROJECT/SERVICE_CONNECTION (service connection token)",
		},
		Claims: withRegistered(
			"org_id", "prj_id", "def_id", "sc_id", "rpo_id", "rpo_uri", "rpo_ver", "rpo_ref", "run_id",
		),
		Algorithms:  []string{"RS256"},
		TokenSource: "POST $(System.OidcRequestUri)?api-version=7.1-preview.1 (optionally &serviceConnectionId=ID) with $(System.AccessToken) as bearer",
		Audience:    "fixed: api://AzureADTokenExchange",
		Notes: []string{
			"the JWKS is shared across organisations: org_id is always pinned",
			"Microsoft documents no claim contract and retires this issuer for Entra-targeting service connections by 2027-07-01",
		},
	},
	{
		Name:        PresetGoogle,
		Description: "Google service-account ID tokens (Cloud Build, Compute Engine, Cloud Run, ...)",
		Issuers:     []IssuerTemplate{{"https://accounts.google.com", "accounts.google.com"}},
		Shared:      true,
		// Only sub pins a tenant: an email is a name, and a deleted service
		// account's email can be taken again by a new account.
		TenantClaims:     []string{"sub"},
		RepositoryClaims: []string{"sub", "email"},
		SubjectFormats:   []string{"SERVICE_ACCOUNT_UNIQUE_ID (numeric)"},
		// Google ID tokens carry no jti: a single_use policy on them could
		// never allow, and policy check warns about it.
		Claims: without(typed(typed(withRegistered("azp", "email"),
			ClaimBool, "email_verified"), ClaimObject, "google"), "jti"),
		Algorithms:  []string{"RS256"},
		TokenSource: "the metadata server: /computeMetadata/v1/instance/service-accounts/default/identity?audience=AUD&format=full, or `gcloud auth print-identity-token --audiences=AUD --include-email`",
		Audience:    "?audience= on the metadata request",
		Notes: []string{
			"every Google account shares this issuer: pin sub (the service account's unique id, never reused)",
			"email is present only with format=full / --include-email; a deleted account's email can be recreated",
		},
	},
	{
		Name:        PresetTerraformCloud,
		Description: "HCP Terraform / Terraform Enterprise",
		Issuers: []IssuerTemplate{
			{"https://app.terraform.io", "HCP Terraform"},
			{"https://{host}", "Terraform Enterprise (params: host)"},
		},
		Shared:           true,
		TenantClaims:     []string{"terraform_organization_id"},
		RepositoryClaims: []string{"terraform_workspace_id", "terraform_project_id"},
		SubjectFormats:   []string{"organization:ORG:project:PROJECT:workspace:WORKSPACE:run_phase:plan|apply"},
		Claims: withRegistered(
			"terraform_organization_id", "terraform_organization_name",
			"terraform_project_id", "terraform_project_name",
			"terraform_workspace_id", "terraform_workspace_name", "terraform_full_workspace",
			"terraform_run_id", "terraform_run_phase",
		),
		Algorithms:  []string{"RS256"},
		TokenSource: "$TFC_WORKLOAD_IDENTITY_TOKEN in each plan and apply, once the workspace sets TFC_WORKLOAD_IDENTITY_AUDIENCE",
		Audience:    "the workspace variable TFC_WORKLOAD_IDENTITY_AUDIENCE",
		Notes: []string{
			"names in sub are mutable and the project part was added later: pin the *_id claims",
			"tokens live until the run phase times out (up to hours): raise limits.max_token_lifetime for this issuer's runs",
		},
	},
	{
		Name:        PresetGeneric,
		Description: "any OpenID Connect issuer named by the configuration",
		Algorithms:  slices.Clone(allowedAlgorithms),
		TokenSource: "whatever the issuer documents; the broker discovers it at ISSUER/.well-known/openid-configuration",
	},
}
