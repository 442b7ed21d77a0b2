package policy

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// benchSet generates n GitHub policies, one repository each: half with an
// exact subject, half with a subject pattern, each pinning its tenant.
func benchSet(b *testing.B, n int) *Set {
	b.Helper()
	f := &File{Name: "bench.yaml"}
	for i := range n {
		p := &Policy{
			Name: fmt.Sprintf("p%06d", i), Provider: "github", Audience: "broker",
			Claims: map[string]string{"repository_owner_id": strconv.Itoa(i / 10)},
			Grant:  GrantSpec{Audience: []string{"api"}, Scopes: []string{"read"}, TTL: time.Minute, Claims: map[string]string{"repository": "{{ .repository }}"}},
		}
		if i%2 == 0 {
			p.Subject = fmt.Sprintf("repo:org-%d/app-%d:environment:prod", i/10, i)
		} else {
			p.SubjectPattern = fmt.Sprintf("repo:org-%d/app-%d:ref:refs/heads/*", i/10, i)
		}
		f.Policies = append(f.Policies, p)
	}
	s, err := NewSet([]*File{f}, LoadOptions{Issuers: testIssuers})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkEvaluate measures one allowed request (a subject pattern, the
// slower kind) and one denied request against growing sets; with the index
// the cost should barely depend on the number of policies.
func BenchmarkEvaluate(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		s := benchSet(b, n)
		i := n/2 | 1 // an odd index: a pattern policy in the middle
		allow := Request{
			Issuer: githubURL, Subject: fmt.Sprintf("repo:org-%d/app-%d:ref:refs/heads/main", i/10, i),
			Audience: []string{"broker"}, TokenType: GrantJWT,
			Claims: map[string]any{"repository_owner_id": json.Number(strconv.Itoa(i / 10)), "repository": "org/app"},
		}
		deny := allow
		deny.Subject = "repo:evil/app:ref:refs/heads/main"
		b.Run(fmt.Sprintf("allow/policies=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Evaluate(allow); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("deny/policies=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Evaluate(deny); err == nil {
					b.Fatal("allowed")
				}
			}
		})
	}
}
