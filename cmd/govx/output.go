package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// outputFile is a file written whole or not at all: the data goes to a temporary file
// beside the path, which replaces the path only on commit, so that a pull refused or cut
// short leaves an earlier export at the path as it was (a scheduled export keeps its last
// good file the day its agreement lapses). A path that exists and is not a regular file
// (a device, a pipe) is written in place: renaming over /dev/null would replace it.
type outputFile struct {
	*os.File
	path string // where commit puts the file; "" when written in place
	done bool
}

// createOutput opens path for a command's output (`-o`).
func createOutput(path string) (*outputFile, error) {
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return nil, fmt.Errorf("-o %s is a directory: name a file", path)
	case err == nil && !st.Mode().IsRegular():
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return nil, err
		}
		return &outputFile{File: f}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.partial")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot write %s: %w", path, err)
	}
	// A temporary file is private (0600); a file replacing another keeps its mode.
	if st != nil {
		if err := f.Chmod(st.Mode().Perm()); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, err
		}
	}
	return &outputFile{File: f, path: path}, nil
}

// commit makes the output the file at its path: written through to the disk, then
// renamed over whatever was there.
func (o *outputFile) commit() error {
	if o.path == "" {
		o.done = true
		return o.Close()
	}
	err := o.Sync()
	if cerr := o.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(o.Name(), o.path)
	}
	o.done = true
	if err != nil {
		os.Remove(o.Name())
		return fmt.Errorf("cannot write %s: %w", o.path, err)
	}
	return nil
}

// abort drops the output, leaving the path as it was; after commit it does nothing.
func (o *outputFile) abort() {
	if o.done {
		return
	}
	o.done = true
	o.Close()
	if o.path != "" {
		os.Remove(o.Name())
	}
}
