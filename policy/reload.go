package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long Watch waits after the last change of a policy
// file before reloading: editors and deploy tools write a file in several
// steps (truncate, write, rename), and one reload should see the last one.
const DefaultDebounce = 200 * time.Millisecond

// ReloaderOptions configures a Reloader. Every field may be left zero.
type ReloaderOptions struct {
	// Debounce is the quiet time Watch waits for; zero means DefaultDebounce.
	Debounce time.Duration
	// OnReload is called after a good set has been stored.
	OnReload func(*Set)
	// OnError is called when a reload fails; the previous set stays in place.
	OnError func(error)
	// OnWatchError is called when the file watcher reports an error.
	OnWatchError func(error)
}

// Reloader loads a policy set and swaps it into a Holder, all or nothing: a
// load or lint error leaves the previous set answering. Reloads are
// serialized; readers of the Holder never wait.
type Reloader struct {
	holder *Holder
	load   func() (*Set, error)
	opts   ReloaderOptions
	mu     sync.Mutex
}

// NewReloader returns a Reloader that stores what load returns into h.
func NewReloader(h *Holder, load func() (*Set, error), opts ReloaderOptions) *Reloader {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	return &Reloader{holder: h, load: load, opts: opts}
}

// ErrReloadDropsAll is returned by Reloader.Reload when the new set has no
// policy while the set in force has some. That is what reading a file in
// the middle of an in-place write (truncate, then write) looks like; the
// write's next event reloads again. To remove every policy, restart.
var ErrReloadDropsAll = errors.New("policy: reload would drop every policy; keeping the previous set")

// Reload loads the set now. On success the new set replaces the old one in
// a single atomic store; on failure the old set stays and the error is
// reported to OnError and returned. A set without policies does not
// replace one with policies (ErrReloadDropsAll).
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.load()
	switch prev := r.holder.Load(); {
	case err != nil:
	case s == nil:
		err = errors.New("policy: reload: the load returned no set")
	case s.Len() == 0 && prev != nil && prev.Len() > 0:
		err = fmt.Errorf("%w (%d in force)", ErrReloadDropsAll, prev.Len())
	}
	if err != nil {
		if r.opts.OnError != nil {
			r.opts.OnError(err)
		}
		return err
	}
	r.holder.Store(s)
	if r.opts.OnReload != nil {
		r.opts.OnReload(s)
	}
	return nil
}

// Watch reloads whenever the policy file or folder at path changes, after
// Debounce of quiet, until ctx ends. It watches the directory (the file's
// directory, for a file) rather than the file, so that editors and tools
// that replace a file by renaming a new one over it are seen, as are
// Kubernetes ConfigMap updates (a swap of the ..data link). It also
// watches that directory's parent, so that a directory removed and created
// again (`rm -rf policies && cp -r new policies`) is watched again and
// reloaded; its loss is reported to OnWatchError. Watch returns once the
// watch is in place.
func (r *Reloader) Watch(ctx context.Context, path string) error {
	path, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("policy: watch: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("policy: watch: %w", err)
	}
	dir, file := path, ""
	if !st.IsDir() {
		dir, file = filepath.Dir(path), path
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("policy: watch: %w", err)
	}
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return fmt.Errorf("policy: watch %s: %w", dir, err)
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := w.Add(parent); err != nil {
			// Not fatal: changes inside dir are still seen.
			r.watchError(fmt.Errorf("policy: watch %s (to see %s removed and created again): %w", parent, dir, err))
		}
	}
	go r.watch(ctx, w, dir, func(name string) bool { return relevant(name, file) })
	return nil
}

// watchError reports a watcher error to OnWatchError.
func (r *Reloader) watchError(err error) {
	if r.opts.OnWatchError != nil {
		r.opts.OnWatchError(err)
	}
}

// relevant reports whether a change of name can change the set loaded from
// file (or, when file is empty, from name's directory).
func relevant(name, file string) bool {
	base := filepath.Base(name)
	if strings.HasPrefix(base, "..data") {
		return true // Kubernetes swaps a ConfigMap volume through ..data
	}
	if file != "" {
		return filepath.Clean(name) == file
	}
	return !strings.HasPrefix(base, ".") && isPolicyFile(base)
}

// watch runs the event loop of Watch: dir is the watched directory, whose
// parent is watched too; relevant filters the changes inside dir.
func (r *Reloader) watch(ctx context.Context, w *fsnotify.Watcher, dir string, relevant func(string) bool) {
	defer func() { _ = w.Close() }()
	timer := time.NewTimer(r.opts.Debounce)
	timer.Stop()
	lost := false
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			switch {
			case filepath.Clean(ev.Name) == dir:
				// An event of the parent about dir (or of dir about itself).
				switch {
				case ev.Has(fsnotify.Create):
					// dir is back (or a new one was renamed into place): the
					// old watch, if any, follows the old directory.
					_ = w.Remove(dir)
					if err := w.Add(dir); err != nil {
						lost = true
						r.watchError(fmt.Errorf("policy: watch %s: created again, but: %w", dir, err))
						continue
					}
					lost = false
					timer.Reset(r.opts.Debounce)
				case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
					if !lost {
						lost = true
						r.watchError(fmt.Errorf("policy: watch %s: the folder was removed; the policies in force stay until it is created again", dir))
					}
				}
			case filepath.Dir(ev.Name) != dir:
				// Another entry of the parent.
			case ev.Op != fsnotify.Chmod && relevant(ev.Name):
				timer.Reset(r.opts.Debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			r.watchError(fmt.Errorf("policy: watch: %w", err))
		case <-timer.C:
			_ = r.Reload() // reported through OnError
		}
	}
}
