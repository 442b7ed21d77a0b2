package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// versionedPolicies returns a file of two policies named for version v;
// both admit the same token.
func versionedPolicies(v int) string {
	var b strings.Builder
	b.WriteString("policies:\n")
	for _, n := range []string{"a", "b"} {
		fmt.Fprintf(&b, "  - name: %s-v%d\n    issuer: https://ci.example\n    audience: broker\n    subject: repo:org/app\n    grant: {audience: [api], scopes: [s%d], ttl: 5m}\n", n, v, v)
	}
	return b.String()
}

func reloadReq() Request {
	return Request{Issuer: "https://ci.example", Subject: "repo:org/app", Audience: []string{"broker"}}
}

func writePolicies(t *testing.T, path, src string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replacePolicies writes src next to path and renames it over path, as
// editors and deploy tools do.
func replacePolicies(t *testing.T, path, src string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	writePolicies(t, tmp, src)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newTestReloader(t *testing.T, path string, opts ReloaderOptions) (*Holder, *Reloader) {
	t.Helper()
	load := func() (*Set, error) { return LoadPath(path, LoadOptions{}) }
	s, err := load()
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(s)
	return h, NewReloader(h, load, opts)
}

func TestReloadSwapsGoodSetAndKeepsPreviousOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	writePolicies(t, path, versionedPolicies(1))
	var reloaded, failed []string
	h, r := newTestReloader(t, path, ReloaderOptions{
		OnReload: func(s *Set) { reloaded = append(reloaded, s.Policies()[0].Name) },
		OnError:  func(err error) { failed = append(failed, err.Error()) },
	})

	writePolicies(t, path, versionedPolicies(2))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	d, err := h.Evaluate(reloadReq())
	if err != nil || d.Policy != "a-v2" {
		t.Fatalf("after a good reload: Evaluate() = %+v, %v; want a-v2", d, err)
	}
	good := h.Load()

	bad := []struct{ name, src string }{
		{"invalid YAML", "policies: [\n"},
		{"compile error", strings.Replace(versionedPolicies(3), "ttl: 5m", "ttl: soon", 1)},
		{"lint refusal", strings.Replace(versionedPolicies(3), "subject: repo:org/app", `subject_pattern: "repo:**"`, 1)},
		{"duplicate names", versionedPolicies(3) + strings.TrimPrefix(versionedPolicies(3), "policies:\n")},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			writePolicies(t, path, tt.src)
			if err := r.Reload(); err == nil {
				t.Fatal("Reload() accepted a bad file")
			}
			if h.Load() != good {
				t.Fatal("a failed reload replaced the set")
			}
			if d, err := h.Evaluate(reloadReq()); err != nil || d.Policy != "a-v2" {
				t.Fatalf("after a failed reload: Evaluate() = %+v, %v; want the previous a-v2", d, err)
			}
		})
	}
	if len(reloaded) != 1 || reloaded[0] != "a-v2" {
		t.Errorf("OnReload calls = %q, want [a-v2]", reloaded)
	}
	if len(failed) != len(bad) {
		t.Errorf("OnError calls = %d, want %d: %q", len(failed), len(bad), failed)
	}
}

func TestReloadRefusesNilSet(t *testing.T) {
	s := loadTestSet(t)
	h := NewHolder(s)
	r := NewReloader(h, func() (*Set, error) { return nil, nil }, ReloaderOptions{})
	if err := r.Reload(); err == nil || h.Load() != s {
		t.Fatalf("Reload() = %v with a nil set; the set must stay", err)
	}
}

// TestReloadRefusesToDropEveryPolicy: a file read mid-truncate (empty, or
// only comments) would drop every policy; the set in force stays, and the
// next good write reloads. A set that had no policy may stay empty.
func TestReloadRefusesToDropEveryPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	writePolicies(t, path, versionedPolicies(1))
	var failed []error
	h, r := newTestReloader(t, path, ReloaderOptions{OnError: func(err error) { failed = append(failed, err) }})
	good := h.Load()
	for _, src := range []string{"", "# policies are being written\n", "policies: []\n", "guardrails:\n  - {name: g, subject: x}\n"} {
		writePolicies(t, path, src)
		if err := r.Reload(); !errors.Is(err, ErrReloadDropsAll) {
			t.Fatalf("Reload() of %q = %v, want ErrReloadDropsAll", src, err)
		}
		if h.Load() != good {
			t.Fatalf("Reload() of %q replaced the set", src)
		}
	}
	if len(failed) != 4 || !strings.Contains(failed[0].Error(), "reload would drop every policy; keeping the previous set") {
		t.Errorf("OnError calls = %v, want 4 naming the refusal", failed)
	}
	writePolicies(t, path, versionedPolicies(2))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if d, err := h.Evaluate(reloadReq()); err != nil || d.Policy != "a-v2" {
		t.Fatalf("after the write completed: Evaluate() = %+v, %v; want a-v2", d, err)
	}

	writePolicies(t, path, "")
	empty, r := newTestReloader(t, path, ReloaderOptions{})
	if err := r.Reload(); err != nil || empty.Load().Len() != 0 {
		t.Fatalf("Reload() of an empty set over an empty set = %v, want it stored", err)
	}
}

// TestConcurrentEvaluateSeesWholeSets reloads between two versions while
// readers evaluate: every set a reader sees holds one version only.
func TestConcurrentEvaluateSeesWholeSets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	var version atomic.Int64
	load := func() (*Set, error) {
		v := version.Add(1)
		f, err := Parse(path, []byte(versionedPolicies(int(v))))
		if err != nil {
			return nil, err
		}
		return NewSet([]*File{f}, LoadOptions{})
	}
	s, err := load()
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(s)
	r := NewReloader(h, load, ReloaderOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				s := h.Load()
				d, err := s.Evaluate(reloadReq())
				if err != nil {
					t.Error(err)
					return
				}
				ps := s.Policies()
				v := strings.TrimPrefix(ps[0].Name, "a-")
				if len(ps) != 2 || ps[1].Name != "b-"+v || d.Policy != "a-"+v || d.Grant.Scopes[0] != "s"+strings.TrimPrefix(v, "v") {
					t.Errorf("a reader saw a mixed set: %s, %s, decision %+v", ps[0].Name, ps[1].Name, d)
					return
				}
			}
		}()
	}
	for range 50 {
		if err := r.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
}

// waitFor returns the next value of ch, failing the test after a generous
// deadline (a missed file event, not a slow machine, is what it catches).
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

func TestWatch(t *testing.T) {
	tests := []struct {
		name  string
		watch func(dir, file string) string // the path to watch
		write func(t *testing.T, path, src string)
	}{
		{"file, written in place", func(_, file string) string { return file }, writePolicies},
		{"file, replaced by rename", func(_, file string) string { return file }, replacePolicies},
		{"folder, written in place", func(dir, _ string) string { return dir }, writePolicies},
		{"folder, replaced by rename", func(dir, _ string) string { return dir }, replacePolicies},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "p.yaml")
			writePolicies(t, file, versionedPolicies(1))
			reloaded := make(chan *Set, 100)
			failed := make(chan error, 100)
			h, r := newTestReloader(t, tt.watch(dir, file), ReloaderOptions{
				Debounce: 20 * time.Millisecond,
				OnReload: func(s *Set) { reloaded <- s },
				OnError:  func(err error) { failed <- err },
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := r.Watch(ctx, tt.watch(dir, file)); err != nil {
				t.Fatal(err)
			}
			last := h.Load()
			// reloadedTo waits for the reload to the set whose first policy
			// is want. A file written in place may be seen empty (truncated)
			// first: that is a good, empty set, and a later event follows.
			reloadedTo := func(want string) {
				t.Helper()
				for {
					last = waitFor(t, reloaded, "reload to "+want)
					if last.Len() > 0 && last.Policies()[0].Name == want {
						return
					}
				}
			}
			// An unrelated file in the folder does not reload.
			writePolicies(t, filepath.Join(dir, "notes.txt"), "x")

			tt.write(t, file, versionedPolicies(2))
			reloadedTo("a-v2")
			tt.write(t, file, "policies: [\n")
			if err := waitFor(t, failed, "reload error after a bad change"); err == nil {
				t.Fatal("nil error")
			}
			for len(reloaded) > 0 {
				last = <-reloaded
			}
			if h.Load() != last {
				t.Fatal("the set in force is not the last good reload")
			}
			tt.write(t, file, versionedPolicies(3))
			reloadedTo("a-v3")
		})
	}
}

func TestWatchMissingPath(t *testing.T) {
	h := NewHolder(nil)
	r := NewReloader(h, func() (*Set, error) { return nil, errors.New("unused") }, ReloaderOptions{})
	if err := r.Watch(context.Background(), filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("Watch of a missing path succeeded")
	}
}

func TestRelevant(t *testing.T) {
	tests := []struct {
		name, file string
		want       bool
	}{
		{"/d/p.yaml", "", true},
		{"/d/p.yml", "", true},
		{"/d/p_test.yaml", "", false},
		{"/d/.p.yaml.swp", "", false},
		{"/d/notes.txt", "", false},
		{"/d/..data", "", true},
		{"/d/..data_tmp", "/d/p.yaml", true},
		{"/d/p.yaml", "/d/p.yaml", true},
		{"/d/q.yaml", "/d/p.yaml", false},
	}
	for _, tt := range tests {
		if got := relevant(tt.name, tt.file); got != tt.want {
			t.Errorf("relevant(%q, %q) = %t, want %t", tt.name, tt.file, got, tt.want)
		}
	}
}
