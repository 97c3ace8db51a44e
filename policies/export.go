package policies

import (
	"io/fs"
	"os"
	"path/filepath"
)

// CopyEmbedded writes the shipped policy files (Rego, tests and data, and the sharing
// process's calendar and applications subdirectories) into dir, so a
// steward starts from them: `govx demo` does this and points the exchange at dir, so
// edits there take effect on the running exchange.
func CopyEmbedded(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := copyProcess(dir); err != nil {
		return err
	}
	return fs.WalkDir(embedded, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := embedded.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, path), data, 0o644)
	})
}
