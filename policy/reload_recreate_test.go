package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The watched folder (or the watched file's folder) is removed and created
// again, as deploy tools do (`rm -rf policies && cp -r new policies`, or a
// new folder renamed into place): the watch must report the loss, come
// back, reload, and keep following the new folder.
func TestWatchFolderRecreated(t *testing.T) {
	removeAndCreate := func(t *testing.T, dir, src string) {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		writePolicies(t, filepath.Join(dir, "p.yaml"), src)
	}
	renameIntoPlace := func(t *testing.T, dir, src string) {
		next := dir + ".next"
		if err := os.Mkdir(next, 0o700); err != nil {
			t.Fatal(err)
		}
		writePolicies(t, filepath.Join(next, "p.yaml"), src)
		if err := os.Rename(dir, dir+".old"); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(next, dir); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		watch    func(dir string) string
		recreate func(t *testing.T, dir, src string)
		lost     bool // OnWatchError hears of the loss
	}{
		{"folder removed and created again", func(dir string) string { return dir }, removeAndCreate, true},
		{"file's folder removed and created again", func(dir string) string { return filepath.Join(dir, "p.yaml") }, removeAndCreate, true},
		{"new folder renamed into place", func(dir string) string { return dir }, renameIntoPlace, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "policies")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			writePolicies(t, filepath.Join(dir, "p.yaml"), versionedPolicies(1))
			reloaded := make(chan *Set, 100)
			watchErrs := make(chan error, 100)
			h, r := newTestReloader(t, tt.watch(dir), ReloaderOptions{
				Debounce:     20 * time.Millisecond,
				OnReload:     func(s *Set) { reloaded <- s },
				OnError:      func(error) {}, // a reload of a half-removed folder fails; the set stays
				OnWatchError: func(err error) { watchErrs <- err },
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := r.Watch(ctx, tt.watch(dir)); err != nil {
				t.Fatal(err)
			}
			reloadedTo := func(want string) {
				t.Helper()
				for {
					if s := waitFor(t, reloaded, "reload to "+want); s.Len() > 0 && s.Policies()[0].Name == want {
						return
					}
				}
			}
			tt.recreate(t, dir, versionedPolicies(2))
			reloadedTo("a-v2")
			if err := waitFor(t, watchErrs, "report of the lost watch"); !strings.Contains(err.Error(), "removed") {
				t.Errorf("OnWatchError(%v), want the folder reported removed", err)
			}
			// The new folder is watched: a change in it reloads.
			writePolicies(t, filepath.Join(dir, "p.yaml"), versionedPolicies(3))
			reloadedTo("a-v3")
			if got := h.Load().Policies()[0].Name; got != "a-v3" {
				t.Fatalf("set in force is %s, want a-v3", got)
			}
		})
	}
}
