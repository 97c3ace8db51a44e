package client

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLoadProfile: a profile is read strictly; a misspelt key is an error naming file
// and line, never a profile quietly missing its token.
func TestLoadProfile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mz-3301.yaml")
	os.WriteFile(path, []byte("flight: 127.0.0.1:8815\nhttp: http://127.0.0.1:8080\ntoken: t0k\n"), 0o600)
	c, err := LoadProfile(path)
	if err != nil || c.Flight != "127.0.0.1:8815" || c.HTTP != "http://127.0.0.1:8080" || c.Token != "t0k" {
		t.Fatalf("LoadProfile = %+v, %v", c, err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"flight: 127.0.0.1:8815\ntokn: t0k\n", path + `:2: unknown key "tokn"`},
		{"", path + ": no YAML document"},
	} {
		os.WriteFile(path, []byte(tc.yaml), 0o600)
		if _, err := LoadProfile(path); err == nil || err.Error() != tc.want {
			t.Errorf("profile %q: error %v, want %s", tc.yaml, err, tc.want)
		}
	}
}
