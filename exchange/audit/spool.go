package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: spool is closed")

// Spool is the durable, append-only local log of audit events of one exchange instance.
// It is safe for concurrent use. Open it with [OpenSpool]; with [WithSink] it also ships
// events to their final store (ClickHouse) in the background.
type Spool struct {
	ckptFailures atomic.Uint64 // periodic checkpoints that could not be written
	ckptNow      chan struct{} // sign the head now, not at the next interval
	heals        atomic.Uint64 // heal attempts, for tests that a fault outlasts them

	dir   string
	dirID os.FileInfo // the directory opened: one put in its place is not this spool
	opts  options

	reqs   chan *appendReq
	closed chan struct{} // closed by Close: no new appends
	// closed when the writer stopped: an append queued after that gets ErrClosed
	writerDone chan struct{}
	wg         sync.WaitGroup

	mu       sync.Mutex // guards the chain head and the failure below
	instance string
	seq      uint64 // last durable sequence number
	head     string // hash of the event at seq
	failed   error  // set when a write, an fsync or the free-space reserve failed; cleared by heal

	// writer-goroutine state
	seg      *os.File
	segFirst uint64
	segSize  int64

	committed atomic.Uint64 // last durable seq, read by the shipper
	shipped   atomic.Uint64 // last seq acknowledged by the sink
	appends   atomic.Uint64
	syncs     atomic.Uint64
	wake      chan struct{} // nudges the shipper after a commit
	flushReq  chan struct{} // Flush asks the shipper not to wait
	shipWake  chan struct{} // nudges Flush waiters after a shipment
	lastCkpt  uint64
	lock      *os.File     // holds the spool's lock file (flock) while open
	spoolSize atomic.Int64 // bytes in segment files, refreshed by the writer
	freeSpace atomic.Int64 // free bytes on the spool's file system at the last check
	reserve   int64        // free bytes the spool keeps; computed at open
	stopShip  context.CancelFunc
	closeOnce sync.Once
	closeErr  error
}

type appendReq struct {
	ev   Event
	done chan error
}

type options struct {
	instance      string
	segmentSize   int64
	sink          Sink
	batchSize     int
	key           ed25519.PrivateKey
	ckptFile      string
	ckptInterval  time.Duration
	shipInterval  time.Duration
	logger        *slog.Logger
	retryMin      time.Duration
	retryMax      time.Duration
	maxGroupBytes int
	reserve       int64 // free-space reserve in bytes; -1: the default
	healInterval  time.Duration
}

// Option configures a Spool.
type Option func(*options)

// WithInstance names the exchange instance whose chain this spool holds (default: the
// host name). A spool directory belongs to one instance for its whole life.
func WithInstance(name string) Option { return func(o *options) { o.instance = name } }

// WithSegmentSize sets the size after which the spool starts a new segment file
// (default 64 MiB). Only whole segments are deleted after shipping.
func WithSegmentSize(bytes int64) Option { return func(o *options) { o.segmentSize = bytes } }

// WithSink ships spooled events to sink (e.g. [NewClickHouseSink]) in the background.
// Without a sink the spool itself is the audit store (the embedded default).
func WithSink(sink Sink) Option { return func(o *options) { o.sink = sink } }

// WithBatchSize sets the most events shipped in one shipment, one INSERT into ClickHouse
// (default 50000). The shipper decodes and sends a shipment in blocks of at most 512
// events, so its memory does not grow with the size; ClickHouse holds a shipment in
// memory until it writes it as one part. A spool this far behind its sink ships full
// shipments, each followed by a pause as long as it took; less is shipped once per
// interval (WithShipInterval).
func WithBatchSize(n int) Option { return func(o *options) { o.batchSize = max(n, 1) } }

// WithCheckpoints signs the chain head with key and appends it to file every interval
// (when the head moved) and at Close. Keep the file away from the event store: it is
// what proves that the store was not rewritten or cut.
func WithCheckpoints(key ed25519.PrivateKey, file string, interval time.Duration) Option {
	return func(o *options) { o.key, o.ckptFile, o.ckptInterval = key, file, interval }
}

// WithShipInterval sets the least time between two shipments to the sink unless a full
// shipment is waiting (default 2s). ClickHouse's cost is mostly per insert, not per
// event: each writes a part (two files per column) that it merges later, ≈ 15–30 ms of
// its CPU on 18.16, so an insert every 2 s costs it ≈ 1 % of a core where one every
// 500 ms cost 3–6 % (docs/BENCHMARKS.md). Events reach ClickHouse that much later; they
// are durable in the spool from the start, and Flush ships at once.
func WithShipInterval(d time.Duration) Option { return func(o *options) { o.shipInterval = d } }

// WithFreeSpaceReserve sets how many bytes must stay free on the spool's file system:
// below it the spool refuses appends (so the exchange refuses requests) before the disk
// is full, and accepts them again once space is freed. The default is the smaller of
// 1 GiB and 5% of the file system; 0 turns the reserve off.
func WithFreeSpaceReserve(bytes int64) Option { return func(o *options) { o.reserve = bytes } }

// WithLogger sets where shipping problems are logged (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRetry sets the shipper's backoff between failed shipments: waits doubling from min
// to max, each less a random part of up to half (default 100ms to 5s).
func WithRetry(min, max time.Duration) Option {
	return func(o *options) { o.retryMin, o.retryMax = min, max }
}

const (
	segMagic       = "GOVXAUD1"
	segSuffix      = ".seg"
	markerName     = "shipped"
	instanceName   = "instance"
	frameHeaderLen = 8 // uint32 length, uint32 CRC-32C of the payload
)

// OpenSpool opens (creating if needed) the spool in dir and recovers it: a record torn
// by a crash at the end of the last segment is cut off, and the chain continues from
// the last good record.
func OpenSpool(dir string, opt ...Option) (*Spool, error) {
	o := options{
		segmentSize:   64 << 20,
		batchSize:     50000,
		ckptInterval:  time.Minute,
		shipInterval:  2 * time.Second,
		retryMin:      100 * time.Millisecond,
		retryMax:      5 * time.Second,
		maxGroupBytes: 8 << 20,
		reserve:       -1,
		healInterval:  250 * time.Millisecond,
	}
	for _, f := range opt {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: cannot create spool directory %s: %w (check the path and its permissions; no access is allowed without audit)", dir, err)
	}
	s := &Spool{
		dir:        dir,
		opts:       o,
		reqs:       make(chan *appendReq, 4096),
		closed:     make(chan struct{}),
		wake:       make(chan struct{}, 1),
		flushReq:   make(chan struct{}, 1),
		ckptNow:    make(chan struct{}, 1),
		writerDone: make(chan struct{}),
	}
	s.shipWake = make(chan struct{})
	dirID, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: cannot read spool directory %s: %w", dir, err)
	}
	s.dirID = dirID
	lock, err := lockSpool(dir)
	if err != nil {
		return nil, err
	}
	s.lock = lock
	writeInstance, err := s.loadInstance()
	if err != nil {
		s.lock.Close()
		return nil, err
	}
	if err := s.recover(); err != nil {
		s.lock.Close()
		return nil, err
	}
	if writeInstance { // only once the events agree it is this instance's chain
		if err := writeFileSync(dir, instanceName, []byte(s.instance+"\n")); err != nil {
			s.lock.Close()
			return nil, err
		}
	}
	s.reserve = o.reserve
	if s.reserve < 0 {
		s.reserve = defaultReserve(dir)
	}
	s.refreshSpace()
	if fs := inMemory(dir); fs != "" {
		o.logger.Warn("audit: the spool is on "+fs+", which keeps files in memory only: its events are lost with the machine, and without a ClickHouse it is their only copy; put the spool directory on a disk", "dir", dir)
	}
	if s.seg == nil && s.freeSpace.Load() >= s.reserve {
		// A new spool's first segment is made now, not by the first request: creating
		// it takes three fsyncs (file, header, directory) that request would wait for.
		// If it cannot be made, the first append tries again and fails as it always
		// has (refused, then healed once the disk is writable).
		_ = s.rotate(s.seq + 1)
	}
	s.committed.Store(s.seq)
	if o.key != nil && o.ckptFile != "" {
		s.lastCkpt = ^uint64(0) // none yet: sign the head at once, below
		if last, ok, err := lastCheckpoint(o.ckptFile, s.instance); err == nil && ok {
			s.lastCkpt = last
		}
		// A checkpoint from the first moment on: verify always has one to check, and a
		// spool deleted before the first periodic checkpoint is still caught.
		if err := s.checkpoint(); err != nil {
			return nil, fmt.Errorf("audit: cannot write checkpoint file %s: %w", o.ckptFile, err)
		}
	}
	s.wg.Add(1)
	go s.writeLoop()
	if o.sink != nil {
		ctx, cancel := context.WithCancel(context.Background())
		s.stopShip = cancel
		s.wg.Add(1)
		go s.shipLoop(ctx)
	}
	if o.key != nil && o.ckptFile != "" && o.ckptInterval > 0 {
		s.wg.Add(1)
		go s.checkpointLoop()
	}
	return s, nil
}

func (s *Spool) loadInstance() (write bool, err error) {
	p := filepath.Join(s.dir, instanceName)
	b, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("audit: cannot read %s: %w", p, err)
	}
	stored := strings.TrimSpace(string(b))
	name := s.opts.instance
	if stored != "" && name != "" && name != stored {
		return false, fmt.Errorf("audit: spool %s belongs to instance %q, not %q: give each instance its own spool directory", s.dir, stored, name)
	}
	if name == "" {
		name = stored
	}
	if name == "" {
		if name, err = os.Hostname(); err != nil || name == "" {
			return false, fmt.Errorf("audit: no instance name given and no host name: use WithInstance")
		}
	}
	s.instance = name
	return stored != name, nil
}

// Instance returns the name of the instance whose chain the spool holds.
func (s *Spool) Instance() string { return s.instance }

// CheckpointFailures counts the periodic checkpoints that could not be written: while it
// rises, events after the last signed checkpoint are covered by no signature.
func (s *Spool) CheckpointFailures() uint64 { return s.ckptFailures.Load() }

// Stats reports how many events were appended and how many fsyncs made them durable:
// with concurrent appenders the second is much smaller than the first (group commit).
func (s *Spool) Stats() (appends, syncs uint64) { return s.appends.Load(), s.syncs.Load() }

// Committed returns the sequence number of the last durable event.
func (s *Spool) Committed() uint64 { return s.committed.Load() }

// Shipped returns the sequence number up to which the sink acknowledged the events.
func (s *Spool) Shipped() uint64 { return s.shipped.Load() }

// Append writes ev to the spool and returns once it is durable (fsynced). It fills
// EventID and Time when empty and sets Instance, Seq, PrevHash and Hash. An error means
// the event may not be recorded: the caller must refuse the access.
func (s *Spool) Append(ctx context.Context, ev *Event) error {
	if ev.Kind != KindDecision && ev.Kind != KindComplete {
		return fmt.Errorf("audit: event kind %q is neither %q nor %q", ev.Kind, KindDecision, KindComplete)
	}
	s.mu.Lock()
	failed := s.failed
	s.mu.Unlock()
	if failed != nil {
		return failed
	}
	r := reqPool.Get().(*appendReq)
	r.ev = *ev
	if r.ev.EventID == "" {
		r.ev.EventID = NewEventID()
	}
	if r.ev.Time.IsZero() {
		r.ev.Time = time.Now()
	}
	r.ev.Time = r.ev.Time.Truncate(time.Millisecond).UTC()
	select {
	case <-s.closed:
		return ErrClosed
	default:
	}
	select {
	case s.reqs <- r:
	case <-s.closed:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return r.answer(ev, err)
	case <-s.writerDone:
		// Closed while queued: the writer may have answered just before it stopped.
		select {
		case err := <-r.done:
			return r.answer(ev, err)
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err() // r stays with the writer, which may still answer it
	}
}

// reqPool holds append requests the writer has answered: every request path appends an
// event or two, and a request is an event's size.
var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan error, 1)} }}

// answer hands the writer's answer for r to the appender (ev, as the spool recorded it)
// and returns r to the pool: the writer is done with it once it has answered.
func (r *appendReq) answer(ev *Event, err error) error {
	if err == nil {
		*ev = r.ev
	}
	r.ev = Event{}
	reqPool.Put(r)
	return err
}

func (s *Spool) writeLoop() {
	defer s.wg.Done()
	defer close(s.writerDone)
	var batch []*appendReq
	buf := make([]byte, 0, 1<<20)
	tick := time.NewTicker(s.opts.healInterval)
	defer tick.Stop()
	lazy := time.NewTimer(lazyWindow)
	lazy.Stop()
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-tick.C:
			s.refreshSpace()
			// Found between requests too, so readiness says so before one is refused.
			if s.Writable() == nil {
				if free := s.freeSpace.Load(); s.reserve > 0 && free < s.reserve {
					s.fail(fmt.Errorf("%w: %d bytes free, %d reserved", ErrReserve, free, s.reserve))
				} else if s.seg != nil {
					if err := s.segInPlace(); err != nil {
						s.fail(err)
					}
				}
			}
			if s.Writable() != nil {
				s.heal()
			}
			continue
		case <-s.closed:
			// Close waits for in-flight appends: drain what was queued before closing.
			for {
				select {
				case r := <-s.reqs:
					batch = append(batch, r)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				s.commit(batch, buf)
			}
			return
		}
		// Everything queued while the previous fsync ran shares the next one.
		batch = s.drain(batch)
		if onlyComplete(batch) {
			// Complete events are written after their responses: nobody's answer waits
			// for them. Alone they would take an fsync of their own, which the next
			// request's decision would then wait behind; so they wait a moment for that
			// decision, and one fsync serves both.
			lazy.Reset(lazyWindow)
		wait:
			for onlyComplete(batch) {
				select {
				case r := <-s.reqs:
					batch = s.drain(append(batch, r))
				case <-lazy.C:
					break wait
				case <-s.closed:
					break wait
				}
			}
			lazy.Stop()
		}
		buf = s.commit(batch, buf)
	}
}

// lazyWindow is the longest a group of complete events waits for a decision to share
// its fsync with: at 2,000 requests/s the next decision comes within half a millisecond.
const lazyWindow = 2 * time.Millisecond

// drain adds to batch what is queued, up to the group's byte budget.
func (s *Spool) drain(batch []*appendReq) []*appendReq {
	bytes := 0
	for _, r := range batch {
		bytes += approxSize(&r.ev)
	}
	for bytes < s.opts.maxGroupBytes {
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
			bytes += approxSize(&r.ev)
		default:
			return batch
		}
	}
	return batch
}

// approxSize is about the bytes an event takes in a frame, for the group's byte budget.
func approxSize(e *Event) int {
	n := 256 + len(e.Filter) + len(e.Purpose) + len(e.CaseRef) + len(e.Error)
	for _, l := range [][]string{e.Columns, e.Keys, e.Reasons} {
		for _, v := range l {
			n += len(v) + 1
		}
	}
	return n
}

func onlyComplete(batch []*appendReq) bool {
	for _, r := range batch {
		if r.ev.Kind != KindComplete {
			return false
		}
	}
	return len(batch) > 0
}

func (s *Spool) commit(batch []*appendReq, buf []byte) []byte {
	s.mu.Lock()
	failed := s.failed
	seq, head := s.seq, s.head
	s.mu.Unlock()
	if failed != nil {
		for _, r := range batch {
			r.done <- failed
		}
		return buf
	}
	buf = buf[:0]
	var err error
	for _, r := range batch {
		seq++
		r.ev.Instance = s.instance
		r.ev.Seq = seq
		r.ev.PrevHash = head
		if buf, err = appendChainedFrame(buf, &r.ev); err != nil {
			break
		}
		head = r.ev.Hash
	}
	if err == nil {
		// One statfs per group commit: next to its fsync it costs nothing.
		if free, _, serr := diskSpace(s.dir); serr == nil {
			s.freeSpace.Store(free)
			if s.reserve > 0 && free-int64(len(buf)) < s.reserve {
				err = fmt.Errorf("%w: %d bytes free, %d reserved", ErrReserve, free, s.reserve)
			}
		}
	}
	if err == nil {
		err = s.writeDurably(buf, batch[0].ev.Seq)
	}
	if err != nil {
		err = s.fail(err)
		for _, r := range batch {
			r.done <- err
		}
		return buf
	}
	s.mu.Lock()
	s.seq, s.head = seq, head
	s.mu.Unlock()
	s.committed.Store(seq)
	s.syncs.Add(1)
	s.appends.Add(uint64(len(batch)))
	for _, r := range batch {
		r.done <- nil
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if cap(buf) > 4*s.opts.maxGroupBytes { // do not keep a huge buffer after a burst
		buf = make([]byte, 0, 1<<20)
	}
	return buf
}

// ErrReserve is why appends are refused while the spool's file system has less free
// space than the configured reserve.
var ErrReserve = errors.New("free space on the spool's file system is below the reserve")

// writeDurably writes one group of frames whose first record has sequence number first,
// starting a new segment when the current one is full, and fsyncs. segSize counts only
// bytes that were fsynced, so a failed group can be cut off again by heal.
func (s *Spool) writeDurably(buf []byte, first uint64) error {
	if s.seg == nil || s.segSize >= s.opts.segmentSize {
		if err := s.rotate(first); err != nil {
			return err
		}
	}
	if _, err := s.seg.Write(buf); err != nil {
		return err
	}
	if err := s.seg.Sync(); err != nil {
		return err
	}
	if err := s.segInPlace(); err != nil {
		return err
	}
	s.segSize += int64(len(buf))
	s.spoolSize.Add(int64(len(buf)))
	return nil
}

// fail records why the spool cannot be written, so that every append is refused until
// heal succeeds, and returns the error appends get.
func (s *Spool) fail(cause error) error {
	err := fmt.Errorf("audit: spool %s cannot be written: %w; no access is allowed without audit — the spool retries by itself and serves again once the disk is writable (free space or fix the disk)", s.dir, cause)
	s.mu.Lock()
	s.failed = err
	s.mu.Unlock()
	s.opts.logger.Error("audit: spool not writable; refusing requests until it is", "dir", s.dir, "err", err)
	select { // sign what was acknowledged before it failed
	case s.ckptNow <- struct{}{}:
	default:
	}
	return err
}

// segInPlace checks that the open segment is still the file its name in the spool
// directory leads to. A segment deleted, renamed or replaced while open (its directory
// removed or moved, say) would take events that no reader of the directory ever finds:
// durable to the fsync, gone to the audit. Checked after each group commit's fsync, so
// those events are refused, not acknowledged; a path lookup beside an fsync costs little.
func (s *Spool) segInPlace() error {
	open, err := s.seg.Stat()
	if err != nil {
		return err
	}
	named, err := os.Stat(s.seg.Name())
	if err != nil || !os.SameFile(open, named) {
		return fmt.Errorf("segment %s was removed or replaced while in use (is the spool directory still there?)", s.seg.Name())
	}
	return nil
}

// heal tries to make a failed spool writable again: it cuts what a failed write may have
// left after the last durable frame, closes the segment, and probes a fresh one (create,
// write, fsync). On success appends are accepted again; the chain continues from the last
// durable event, so nothing acknowledged is lost and nothing unacknowledged remains.
func (s *Spool) heal() {
	s.heals.Add(1)
	if s.reserve > 0 && s.freeSpace.Load() < s.reserve {
		return
	}
	if cur, err := os.Stat(s.dir); err != nil || !os.SameFile(cur, s.dirID) {
		// The directory is gone or another one took its place: whatever happened to the
		// events in it is for a restart to find (it refuses a spool missing signed
		// events), not for this process to paper over with a fresh segment.
		return
	}
	if s.seg != nil {
		name := s.seg.Name()
		if err := s.seg.Truncate(s.segSize); err != nil {
			return
		}
		if err := s.seg.Sync(); err != nil {
			return
		}
		open, _ := s.seg.Stat()
		named, serr := os.Stat(name)
		s.seg.Close()
		s.seg = nil
		if s.segSize <= int64(len(segMagic)) && serr == nil && os.SameFile(open, named) {
			// It holds no event: the new segment takes its name.
			if err := os.Remove(name); err != nil {
				return
			}
		}
	}
	s.mu.Lock()
	next := s.seq + 1
	s.mu.Unlock()
	if err := s.rotate(next); err != nil {
		s.seg = nil
		return
	}
	s.mu.Lock()
	was := s.failed
	s.failed = nil
	s.mu.Unlock()
	s.opts.logger.Info("audit: spool writable again; accepting requests", "dir", s.dir, "after", was)
}

// Writable returns nil while the spool accepts appends, or why it does not.
func (s *Spool) Writable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// SpoolBytes returns the bytes held in the spool's segment files.
func (s *Spool) SpoolBytes() int64 { return s.spoolSize.Load() }

// FreeSpaceMargin returns the free bytes on the spool's file system above the reserve
// (negative: below it, and appends are refused).
func (s *Spool) FreeSpaceMargin() int64 { return s.freeSpace.Load() - s.reserve }

func (s *Spool) refreshSpace() {
	if free, _, err := diskSpace(s.dir); err == nil {
		s.freeSpace.Store(free)
	}
	if segs, err := listSegments(s.dir); err == nil {
		var n int64
		for _, f := range segs {
			if st, err := os.Stat(filepath.Join(s.dir, segName(f))); err == nil {
				n += st.Size()
			}
		}
		s.spoolSize.Store(n)
	}
}

// diskSpace is a variable so that tests can simulate a full disk.
var diskSpace = func(dir string) (free, total int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

// inMemory names the file system dir is on when it keeps files only in memory (tmpfs,
// ramfs), where a spool's events do not survive the machine.
func inMemory(dir string) string {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return ""
	}
	switch st.Type {
	case 0x01021994:
		return "tmpfs"
	case 0x858458f6:
		return "ramfs"
	}
	return ""
}

func defaultReserve(dir string) int64 {
	_, total, err := diskSpace(dir)
	if err != nil || total <= 0 {
		return 1 << 30
	}
	return min(int64(1)<<30, total/20)
}

func (s *Spool) rotate(first uint64) error {
	if s.seg != nil {
		if err := s.seg.Close(); err != nil {
			return err
		}
		s.seg = nil
	}
	name := segName(first)
	path := filepath.Join(s.dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		// The new file holds no event yet: remove it so that a retry can create it.
		f.Close()
		os.Remove(path)
		return err
	}
	if _, err := f.Write([]byte(segMagic)); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := syncDir(s.dir); err != nil {
		return fail(err)
	}
	s.seg, s.segFirst, s.segSize = f, first, int64(len(segMagic))
	s.spoolSize.Add(int64(len(segMagic)))
	return nil
}

// Flush waits until every event appended so far was acknowledged by the sink.
func (s *Spool) Flush(ctx context.Context) error {
	if s.opts.sink == nil {
		return nil
	}
	target := s.committed.Load()
	select { // ship now, not at the end of the interval
	case s.flushReq <- struct{}{}:
	default:
	}
	for {
		s.mu.Lock()
		ch := s.shipWake
		s.mu.Unlock()
		if s.shipped.Load() >= target {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("audit: %d events not yet shipped: %w", target-s.shipped.Load(), ctx.Err())
		}
	}
}

// Close stops accepting appends, writes what was queued, signs a final checkpoint and
// stops the shipper. Events not yet shipped stay in the spool for the next opener.
func (s *Spool) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		if s.stopShip != nil {
			s.stopShip()
		}
		s.wg.Wait()
		var errs []error
		if s.seg != nil {
			errs = append(errs, s.seg.Close())
		}
		if err := s.checkpoint(); err != nil {
			errs = append(errs, err)
		}
		if s.opts.sink != nil {
			errs = append(errs, s.opts.sink.Close())
		}
		errs = append(errs, s.lock.Close())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *Spool) checkpointLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.ckptInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.ckptNow:
		case <-s.closed:
			return
		}
		if err := s.checkpoint(); err != nil {
			s.ckptFailures.Add(1)
			s.opts.logger.Error("audit: cannot write checkpoint", "file", s.opts.ckptFile, "err", err)
		}
	}
}

// checkpoint signs and records the durable chain head if it moved since the last one.
func (s *Spool) checkpoint() error {
	if s.opts.key == nil || s.opts.ckptFile == "" {
		return nil
	}
	// The head is the last acknowledged event, so it is signed while the spool cannot
	// write too: above all then, since whatever took the spool's disk or directory may
	// have taken acknowledged events with it, and a restart must be able to tell.
	s.mu.Lock()
	seq, head := s.seq, s.head
	s.mu.Unlock()
	if seq == s.lastCkpt {
		return nil
	}
	c := Checkpoint{Instance: s.instance, Seq: seq, Hash: head, Time: time.Now().UTC().Truncate(time.Millisecond)}
	c.Sign(s.opts.key)
	if err := appendCheckpoint(s.opts.ckptFile, &c); err != nil {
		return err
	}
	s.lastCkpt = seq
	return nil
}

// ---- markers and recovery

// ShippedMarker records that the sink acknowledged every event of Instance up to Seq,
// whose hash is Hash. The shipper writes it before it deletes shipped segments, signed
// with the checkpoint key when there is one, so that verify can tell events that left
// the spool for the sink from events that were removed.
type ShippedMarker struct {
	Instance string    `json:"instance"`
	Seq      uint64    `json:"seq"`
	Hash     string    `json:"hash"`
	Time     time.Time `json:"time"`
	Sig      string    `json:"sig,omitempty"` // base64 Ed25519 signature of message()
}

func (m *ShippedMarker) message() []byte {
	return headMessage("govx-audit-shipped-v1", m.Instance, m.Seq, m.Hash, m.Time)
}

// Valid reports whether Sig is pub's signature of the marker.
func (m *ShippedMarker) Valid(pub ed25519.PublicKey) bool { return validHead(pub, m.message(), m.Sig) }

// ReadShippedMarker reads the shipped marker of the spool in dir; nil when events were
// never shipped from it.
func ReadShippedMarker(dir string) (*ShippedMarker, error) {
	p := filepath.Join(dir, markerName)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: cannot read spool marker %s: %w", p, err)
	}
	var m ShippedMarker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("audit: spool marker %s is damaged: %w", p, err)
	}
	return &m, nil
}

func (s *Spool) writeMarker(seq uint64, hash string) error {
	m := ShippedMarker{Instance: s.instance, Seq: seq, Hash: hash, Time: time.Now().UTC().Truncate(time.Millisecond)}
	if s.opts.key != nil {
		m.Sig = signHead(s.opts.key, m.message())
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return writeFileSync(s.dir, markerName, append(b, '\n'))
}

// DamagedError is why a spool cannot be opened: it holds damage other than a torn final
// frame, or a gap in its sequence numbers. Nothing was changed; `govx audit repair`
// ([Repair]) moves the damage aside and records the gap in the chain.
type DamagedError struct {
	Dir         string
	Checkpoints string // the exchange's checkpoint file, which repair needs to count what is missing
	Damage      []Damage
	Gaps        []string
}

func (e *DamagedError) Error() string {
	var what string
	switch {
	case len(e.Damage) > 0:
		what = "damaged at " + e.Damage[0].String()
	default:
		what = "has a gap: " + e.Gaps[0]
	}
	if n := len(e.Damage) + len(e.Gaps); n > 1 {
		what += fmt.Sprintf(" (and %d more problem(s))", n-1)
	}
	repair := "govx audit repair --spool " + e.Dir
	if e.Checkpoints != "" {
		repair += " --checkpoints " + e.Checkpoints
	}
	return fmt.Sprintf("audit: spool %s %s; the exchange does not start on a damaged audit log, so that no evidence is overwritten. "+
		"Keep a copy of the directory, then run `%s` (add --key with the checkpoint signing key to sign the gap at once): it moves the damage aside intact and records the gap in the chain", e.Dir, what, repair)
}

// recover reads the whole spool. A torn final frame (a crash in the middle of a write,
// never acknowledged) is moved to a file beside its segment and cut off; any other damage
// or gap refuses the spool with a [DamagedError], changing nothing.
func (s *Spool) recover() error {
	m, err := ReadShippedMarker(s.dir)
	if err != nil {
		return err
	}
	// What this exchange signed itself: the spool may not hold less, nor differ from it.
	var pub ed25519.PublicKey
	var ck *Checkpoint
	if s.opts.key != nil {
		pub = s.opts.key.Public().(ed25519.PublicKey)
		if s.opts.ckptFile != "" {
			if ck, err = lastValidCheckpoint(s.opts.ckptFile, s.instance, pub); err != nil {
				return err
			}
		}
	}
	var shipped uint64
	prev := GenesisHash
	bad := &DamagedError{Dir: s.dir, Checkpoints: s.opts.ckptFile}
	if m != nil {
		shipped, prev = m.Seq, m.Hash
		if pub != nil && (m.Instance != s.instance || !m.Valid(pub)) {
			bad.Gaps = append(bad.Gaps, fmt.Sprintf("the shipped marker %s is not signed by this exchange's key: it cannot vouch that events up to seq %d reached the audit store", filepath.Join(s.dir, markerName), m.Seq))
		}
	}
	st, err := readSpoolState(s.dir, shipped, prev, ck)
	if err != nil {
		return err
	}
	// The instance file can be lost or edited (or only the segments restored); the
	// events, else the shipped marker, say whose chain this is, and continuing another
	// instance's chain under this name would break both.
	held := st.instance
	if held == "" && m != nil {
		held = m.Instance
	}
	if held != "" && held != s.instance {
		return fmt.Errorf("audit: spool %s holds the chain of instance %q, not %q: put its %s file back (one line: %s) and run as that instance, or give %q its own spool directory",
			s.dir, held, s.instance, instanceName, held, s.instance)
	}
	bad.Gaps = append(bad.Gaps, st.gaps...)
	var torn *Damage
	for i, d := range st.damage {
		if d.Torn && i == len(st.damage)-1 {
			torn = &st.damage[i]
			continue
		}
		bad.Damage = append(bad.Damage, d)
	}
	head := shipped
	if st.last != nil {
		head = st.last.Seq
	}
	if ck != nil && ck.Seq > head {
		// Acknowledged and signed, so never torn by a crash: removed.
		if torn != nil {
			bad.Damage = append(bad.Damage, *torn)
			torn = nil
		}
		bad.Gaps = append(bad.Gaps, fmt.Sprintf("the spool ends at seq %d but this exchange signed a checkpoint at seq %d (%s): events %d..%d were removed",
			head, ck.Seq, ck.Time.Format(time.RFC3339), head+1, ck.Seq))
	}
	if len(bad.Damage) > 0 || len(bad.Gaps) > 0 {
		return bad
	}
	s.shipped.Store(shipped)
	s.seq, s.head = shipped, prev
	if st.last != nil {
		s.seq, s.head = st.last.Seq, st.last.Hash
	}
	if len(st.segs) == 0 {
		return nil
	}
	lastSeg := st.segs[len(st.segs)-1]
	p := filepath.Join(s.dir, segName(lastSeg))
	if torn != nil {
		if err := s.cutTorn(p, *torn, st.good); err != nil {
			return err
		}
		if torn.Offset == 0 {
			return nil // the segment never got its header; cutTorn removed it
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit: cannot open spool segment %s: %w", p, err)
	}
	if _, err := f.Seek(st.good, 0); err != nil {
		f.Close()
		return err
	}
	s.seg, s.segFirst, s.segSize = f, lastSeg, st.good
	return nil
}

// cutTorn keeps the bytes of a torn final frame in a file beside the segment, then cuts
// them off the segment. They were never acknowledged to anyone, but an auditor may still
// want to see them.
func (s *Spool) cutTorn(path string, d Damage, good int64) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("audit: cannot read spool segment %s: %w", path, err)
	}
	if d.Offset == 0 {
		// Only part of the header was written: the file holds nothing of any event.
		s.opts.logger.Warn("audit: removed a spool segment whose header was never completely written (a crash while starting it)", "file", path, "bytes", len(data))
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("audit: cannot remove empty spool segment %s: %w", path, err)
		}
		return syncDir(s.dir)
	}
	aside := fmt.Sprintf("%s.torn-%d", path, good)
	if err := os.WriteFile(aside, data[good:], 0o600); err != nil {
		return fmt.Errorf("audit: cannot keep the torn frame of %s aside in %s: %w", path, aside, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit: cannot open spool segment %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Truncate(good); err != nil {
		return fmt.Errorf("audit: cannot cut torn record from %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	s.opts.logger.Warn("audit: cut a torn final frame left by a crash (never acknowledged); its bytes are kept aside",
		"file", path, "offset", good, "bytes", len(data)-int(good), "kept_in", aside, "after_seq", d.AfterSeq)
	return syncDir(s.dir)
}

// lockSpool takes the spool directory's lock: one exchange (or one repair) at a time,
// so that two writers never interleave a chain and repair never moves a segment that an
// exchange is still appending to.
func lockSpool(dir string) (*os.File, error) {
	p := filepath.Join(dir, "lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: cannot open the spool's lock file %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: spool %s is in use by another process (an exchange, a demo or a repair holds %s): stop it first", dir, p)
	}
	return f, nil
}

// InUse reports whether a process holds the spool in dir open (an exchange, a demo, a
// repair). A directory that is not there is not in use.
func InUse(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "lock")); err != nil {
		return false
	}
	f, err := lockSpool(dir)
	if err != nil {
		return true
	}
	f.Close()
	return false
}

func segName(first uint64) string { return fmt.Sprintf("%020d%s", first, segSuffix) }

func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: cannot list spool %s: %w", dir, err)
	}
	var out []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) {
			continue
		}
		var first uint64
		if _, err := fmt.Sscanf(strings.TrimSuffix(name, segSuffix), "%d", &first); err != nil {
			continue
		}
		if first == 0 || name != segName(first) {
			continue // not a name the spool gives (it starts at seq 1, zero-padded)
		}
		out = append(out, first)
	}
	// os.ReadDir sorts by name and names are zero-padded: already in seq order.
	return out, nil
}

func writeFileSync(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
