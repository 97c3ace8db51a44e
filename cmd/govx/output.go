package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// outputFile is a command's output file (`-o`), written whole or not at all: the data
// goes to a private temporary file (0600), and only a command that succeeds puts it in
// place, so that a pull refused, failed or interrupted leaves an earlier export at the
// path as it was (a scheduled export keeps its last good file the day its agreement
// lapses), and no copy of the rows readable by others lies about meanwhile.
//
// The temporary file has no name where the system allows (Linux's O_TMPFILE): a pull
// killed outright (kill -9, a power cut) leaves nothing behind, and a new file gets its
// name only once whole. Elsewhere it is a hidden ".FILE.*.partial" beside the path.
//
// A new file is the temporary file named (0600: it holds what a department was
// granted, for that department). An existing file keeps what the operator gave it —
// owner, group, mode, ACLs, other hard links, the file a symlink points to — and a file
// the caller may not write is refused before anything is pulled. Where the temporary
// file, given the existing one's mode, would differ in none of these (a plain file of
// one link, the caller's own, in the same group, without extended attributes) it
// replaces the file by a rename, as a scheduled export's file usually is; otherwise the
// file is rewritten in place from the temporary one, a second copy of the pull. A path
// that is not a regular file (a device, a pipe) is written directly.
type outputFile struct {
	*os.File             // where the data goes first
	path     string      // the path asked for
	target   *os.File    // the existing file; nil for a new one
	replace  bool        // the existing file is replaced by a rename, not rewritten
	mode     fs.FileMode // the existing file's, given to the temporary one once it replaced it
	replaced bool        // the rename happened (not the fallback to a rewrite)
	direct   bool        // writing straight to a device or pipe
	unnamed  bool        // the temporary file has no name (O_TMPFILE)
	done     bool
}

// createOutput opens path for a command's output.
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
		return &outputFile{File: f, path: path, direct: true}, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("cannot write %s: %w", path, pathErr(err))
	}
	o := &outputFile{path: path}
	if err == nil {
		// Opened now, not truncated: a file the caller may not write is refused before
		// the pull is asked for.
		if o.target, err = os.OpenFile(path, os.O_WRONLY, 0); err != nil {
			return nil, fmt.Errorf("cannot write %s: %w", path, pathErr(err))
		}
	}
	if o.File, err = os.OpenFile(filepath.Dir(path), os.O_RDWR|unix.O_TMPFILE, 0o600); err == nil {
		o.unnamed = true
		o.replace, o.mode = replaceable(o.target, path, o.File)
		return o, nil
	}
	o.File, err = os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.partial")
	if err != nil && o.target != nil {
		// The file is writable but its directory is not: the temporary file goes to
		// the system's temporary directory, as the file is rewritten in place anyway.
		o.File, err = os.CreateTemp("", "govx-"+filepath.Base(path)+".*.partial")
	}
	if err != nil {
		if o.target != nil {
			o.target.Close()
		}
		return nil, fmt.Errorf("cannot write beside %s: %w", path, pathErr(err))
	}
	if filepath.Dir(o.Name()) == filepath.Dir(path) {
		o.replace, o.mode = replaceable(o.target, path, o.File)
	}
	return o, nil
}

// replaceable reports whether target, the existing file at path, can be replaced by
// tmp, a new file beside it, without losing anything of it, and its mode: it is a plain
// file of one link (not a symlink), the caller's own and of tmp's group, without
// extended attributes (ACLs, labels). tmp gets the mode only as it replaces the file:
// until then its rows are the caller's alone.
func replaceable(target *os.File, path string, tmp *os.File) (bool, fs.FileMode) {
	if target == nil {
		return false, 0
	}
	var st, ts unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o7000 != 0 || st.Nlink != 1 || int(st.Uid) != os.Geteuid() {
		return false, 0
	}
	if unix.Fstat(int(tmp.Fd()), &ts) != nil || ts.Gid != st.Gid {
		return false, 0
	}
	if n, err := unix.Listxattr(path, nil); n != 0 || (err != nil && !errors.Is(err, unix.ENOTSUP)) {
		return false, 0
	}
	return true, fs.FileMode(st.Mode & 0o777)
}

func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// commit puts the output in place, written through to the disk.
func (o *outputFile) commit() error {
	if o.direct {
		o.done = true
		return o.Close()
	}
	// A new file must be on disk before its name is; an existing one is synced once
	// rewritten, and the temporary file then goes.
	var err error
	if o.target != nil && !o.samePath() {
		o.abort()
		return fmt.Errorf("%s was replaced or removed during the pull: nothing was written; pull again", o.path)
	}
	switch {
	case o.replace:
		// The mode comes last: until the rename, and if the command is killed between
		// link and rename, the rows are the caller's alone.
		if err = o.Sync(); err == nil {
			err = o.name()
		}
		if err == nil && o.replaced {
			err = o.Chmod(o.mode)
		}
		o.target.Close() // (closed already if name fell back to rewriting it)
	case o.target != nil:
		err = o.rewrite()
	default:
		if err = o.Sync(); err == nil {
			err = o.name()
		}
	}
	if cerr := o.Close(); err == nil {
		err = cerr
	}
	o.done = true
	if !o.unnamed && ((o.target != nil && !o.replace) || err != nil) {
		os.Remove(o.Name())
	}
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", o.path, err)
	}
	return nil
}

// samePath reports whether path still names the existing file opened at the start.
func (o *outputFile) samePath() bool {
	var a, b unix.Stat_t
	return unix.Stat(o.path, &a) == nil && unix.Fstat(int(o.target.Fd()), &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino
}

// procFD names an open file by its descriptor (a variable for tests: a system without
// /proc).
var procFD = "/proc/self/fd/%d"

// name gives the output its name: the temporary file's, renamed, or the unnamed file
// linked in (a path that appeared meanwhile is not replaced, as a rename would). A file
// replaced is renamed over, the unnamed one through a hidden name it has for a moment.
func (o *outputFile) name() error {
	if !o.unnamed {
		err := os.Rename(o.Name(), o.path)
		o.replaced = err == nil && o.replace
		return err
	}
	if o.replace {
		hidden := filepath.Join(filepath.Dir(o.path), fmt.Sprintf(".%s.%d.partial", filepath.Base(o.path), os.Getpid()))
		if err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf(procFD, o.Fd()), unix.AT_FDCWD, hidden, unix.AT_SYMLINK_FOLLOW); err != nil {
			return o.rewrite() // no /proc, or a name in the way: rewritten in place instead
		}
		if err := os.Rename(hidden, o.path); err != nil {
			os.Remove(hidden)
			return err
		}
		o.replaced = true
		return nil
	}
	err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf(procFD, o.Fd()), unix.AT_FDCWD, o.path, unix.AT_SYMLINK_FOLLOW)
	if err == nil || errors.Is(err, unix.EEXIST) {
		return err
	}
	// No /proc to link through: the file is copied out instead, under the same terms.
	f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = o.Seek(0, io.SeekStart)
	if err == nil {
		_, err = io.Copy(f, o.File)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(o.path)
	}
	return err
}

// rewrite copies the temporary file over the existing one, in place.
//
// The space it needs is claimed first, while the file is still as it was, and the file
// is then written over and cut to its new length (not emptied first, which would give
// the claimed space back): a disk that fills refuses the pull, not half the file. (A
// kill -9 or a power cut during the copy can still leave it mixed: only a rename is
// atomic.) The kernel clears setuid and setgid bits on a write by their owner; they are
// put back.
func (o *outputFile) rewrite() error {
	defer o.target.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(o.target.Fd()), &st); err != nil {
		return err
	}
	size, err := o.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if size > 0 {
		err := unix.Fallocate(int(o.target.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, size)
		if err != nil && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("%w (the file is left as it was)", err)
		}
	}
	if _, err := o.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := io.Copy(o.target, o.File); err != nil {
		return err
	}
	if err := o.target.Truncate(size); err != nil {
		return err
	}
	if st.Mode&0o6000 != 0 {
		_ = o.target.Chmod(fs.FileMode(st.Mode&0o777) | unixModeBits(st.Mode))
	}
	return o.target.Sync()
}

// unixModeBits are a stat mode's setuid, setgid and sticky bits as fs.FileMode's.
func unixModeBits(m uint32) fs.FileMode {
	var b fs.FileMode
	if m&unix.S_ISUID != 0 {
		b |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		b |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		b |= fs.ModeSticky
	}
	return b
}

// abort drops the output, leaving the path as it was; after commit it does nothing.
func (o *outputFile) abort() {
	if o.done {
		return
	}
	o.done = true
	o.Close()
	if o.target != nil {
		o.target.Close()
	}
	if !o.direct && !o.unnamed {
		os.Remove(o.Name())
	}
}
