package sqlstore

import (
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name    string
		fs      fstest.MapFS
		want    []int64
		wantErr string
	}{
		{"ordered by number, not name", fstest.MapFS{
			"m/0010_later.sql": file("B"), "m/0002_second.sql": file("A"), "m/README.md": file("x"),
		}, []int64{2, 10}, ""},
		{"duplicate version", fstest.MapFS{"m/0001_a.sql": file("A"), "m/1_b.sql": file("B")}, nil, "share version 1"},
		{"no underscore", fstest.MapFS{"m/0001.sql": file("A")}, nil, "NNNN_description"},
		{"not a number", fstest.MapFS{"m/one_init.sql": file("A")}, nil, "positive number"},
		{"zero version", fstest.MapFS{"m/0000_init.sql": file("A")}, nil, "positive number"},
		{"empty", fstest.MapFS{"m/README.md": file("x")}, nil, "no migrations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := Migrations(tt.fs, "m")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Migrations error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Migrations: %v", err)
			}
			var got []int64
			for _, m := range ms {
				got = append(got, m.Version)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("versions (-want +got):\n%s", d)
			}
		})
	}
}

func TestNanos(t *testing.T) {
	tests := []struct {
		name string
		t    time.Time
		ok   bool
	}{
		{"now", time.Now(), true},
		{"epoch", time.Unix(0, 0), true},
		{"before 1970", time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC), true},
		{"zero", time.Time{}, false},
		{"after 2262", time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"before 1677", time.Date(1677, 1, 1, 0, 0, 0, 0, time.UTC), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Nanos(tt.t)
			if (err == nil) != tt.ok {
				t.Fatalf("Nanos(%s) error = %v, want ok=%v", tt.t, err, tt.ok)
			}
			if tt.ok && !Time(n).Equal(tt.t) {
				t.Errorf("Time(Nanos(%s)) = %s", tt.t, Time(n))
			}
		})
	}
}

func TestList(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"nil", nil, nil},
		{"empty becomes nil", []string{}, nil},
		{"values", []string{"a", `"quoted"`, "ü", ""}, []string{"a", `"quoted"`, "ü", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseList(List(tt.in))
			if err != nil {
				t.Fatalf("ParseList: %v", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("round trip (-want +got):\n%s", d)
			}
		})
	}
	if _, err := ParseList("{not json"); err == nil {
		t.Error("ParseList of bad JSON succeeded")
	}
}
