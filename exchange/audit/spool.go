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
	"time"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: spool is closed")

// Spool is the durable, append-only local log of audit events of one exchange instance.
// It is safe for concurrent use. Open it with [OpenSpool]; with [WithSink] it also ships
// events to their final store (ClickHouse) in the background.
type Spool struct {
	dir  string
	opts options

	reqs   chan *appendReq
	closed chan struct{} // closed by Close: no new appends
	// closed when the writer stopped: an append queued after that gets ErrClosed
	writerDone chan struct{}
	wg         sync.WaitGroup

	mu       sync.Mutex // guards the chain head and the failure below
	instance string
	seq      uint64 // last durable sequence number
	head     string // hash of the event at seq
	failed   error  // sticky: once a write or fsync failed, nothing is trusted

	// writer-goroutine state
	seg      *os.File
	segFirst uint64
	segSize  int64

	committed atomic.Uint64 // last durable seq, read by the shipper
	shipped   atomic.Uint64 // last seq acknowledged by the sink
	appends   atomic.Uint64
	syncs     atomic.Uint64
	wake      chan struct{} // nudges the shipper after a commit
	shipWake  chan struct{} // nudges Flush waiters after a shipment
	lastCkpt  uint64
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

// WithBatchSize sets the most events shipped in one batch (default 20000).
func WithBatchSize(n int) Option { return func(o *options) { o.batchSize = n } }

// WithCheckpoints signs the chain head with key and appends it to file every interval
// (when the head moved) and at Close. Keep the file away from the event store: it is
// what proves that the store was not rewritten or cut.
func WithCheckpoints(key ed25519.PrivateKey, file string, interval time.Duration) Option {
	return func(o *options) { o.key, o.ckptFile, o.ckptInterval = key, file, interval }
}

// WithShipInterval sets the least time between two shipments to the sink unless a full
// batch is waiting (default 500ms): fewer, larger inserts cost ClickHouse far less.
func WithShipInterval(d time.Duration) Option { return func(o *options) { o.shipInterval = d } }

// WithLogger sets where shipping problems are logged (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRetry sets the shipper's backoff between failed shipments (default 100ms to 5s).
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
		batchSize:     20000,
		ckptInterval:  time.Minute,
		shipInterval:  500 * time.Millisecond,
		retryMin:      100 * time.Millisecond,
		retryMax:      5 * time.Second,
		maxGroupBytes: 8 << 20,
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
		writerDone: make(chan struct{}),
	}
	s.shipWake = make(chan struct{})
	if err := s.loadInstance(); err != nil {
		return nil, err
	}
	if err := s.recover(); err != nil {
		return nil, err
	}
	s.committed.Store(s.seq)
	s.lastCkpt = s.seq
	if o.key != nil && o.ckptFile != "" {
		if last, ok, err := lastCheckpoint(o.ckptFile, s.instance); err == nil && ok {
			s.lastCkpt = last
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

func (s *Spool) loadInstance() error {
	p := filepath.Join(s.dir, instanceName)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		stored := strings.TrimSpace(string(b))
		if s.opts.instance != "" && s.opts.instance != stored {
			return fmt.Errorf("audit: spool %s belongs to instance %q, not %q: give each instance its own spool directory", s.dir, stored, s.opts.instance)
		}
		s.instance = stored
		return nil
	case errors.Is(err, os.ErrNotExist):
		name := s.opts.instance
		if name == "" {
			if name, err = os.Hostname(); err != nil || name == "" {
				return fmt.Errorf("audit: no instance name given and no host name: use WithInstance")
			}
		}
		s.instance = name
		return writeFileSync(s.dir, instanceName, []byte(name+"\n"))
	default:
		return fmt.Errorf("audit: cannot read %s: %w", p, err)
	}
}

// Instance returns the name of the instance whose chain the spool holds.
func (s *Spool) Instance() string { return s.instance }

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
	r := &appendReq{ev: *ev, done: make(chan error, 1)}
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
		if err == nil {
			*ev = r.ev
		}
		return err
	case <-s.writerDone:
		// Closed while queued: the writer may have answered just before it stopped.
		select {
		case err := <-r.done:
			if err == nil {
				*ev = r.ev
			}
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Spool) writeLoop() {
	defer s.wg.Done()
	defer close(s.writerDone)
	var batch []*appendReq
	buf := make([]byte, 0, 1<<20)
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
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
				buf = s.commit(batch, buf)
			}
			return
		}
		// Everything queued while the previous fsync ran shares the next one.
	drain:
		for len(buf) < s.opts.maxGroupBytes {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		buf = s.commit(batch, buf)
	}
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
		err = s.writeDurably(buf, batch[0].ev.Seq)
	}
	if err != nil {
		err = fmt.Errorf("audit: spool %s cannot be written: %w; no access is allowed without audit — free or fix the disk and restart the exchange", s.dir, err)
		s.mu.Lock()
		s.failed = err
		s.mu.Unlock()
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

// writeDurably writes one group of frames whose first record has sequence number first,
// starting a new segment when the current one is full, and fsyncs.
func (s *Spool) writeDurably(buf []byte, first uint64) error {
	if s.seg == nil || s.segSize >= s.opts.segmentSize {
		if err := s.rotate(first); err != nil {
			return err
		}
	}
	if _, err := s.seg.Write(buf); err != nil {
		return err
	}
	s.segSize += int64(len(buf))
	return s.seg.Sync()
}

func (s *Spool) rotate(first uint64) error {
	if s.seg != nil {
		if err := s.seg.Close(); err != nil {
			return err
		}
		s.seg = nil
	}
	name := segName(first)
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte(segMagic)); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	s.seg, s.segFirst, s.segSize = f, first, int64(len(segMagic))
	return nil
}

// Flush waits until every event appended so far was acknowledged by the sink.
func (s *Spool) Flush(ctx context.Context) error {
	if s.opts.sink == nil {
		return nil
	}
	target := s.committed.Load()
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
			if err := s.checkpoint(); err != nil {
				s.opts.logger.Error("audit: cannot write checkpoint", "file", s.opts.ckptFile, "err", err)
			}
		case <-s.closed:
			return
		}
	}
}

// checkpoint signs and records the durable chain head if it moved since the last one.
func (s *Spool) checkpoint() error {
	if s.opts.key == nil || s.opts.ckptFile == "" {
		return nil
	}
	s.mu.Lock()
	seq, head, failed := s.seq, s.head, s.failed
	s.mu.Unlock()
	if failed != nil || seq == 0 || seq == s.lastCkpt {
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

type shippedMarker struct {
	Instance string `json:"instance"`
	Seq      uint64 `json:"seq"`
	Hash     string `json:"hash"`
}

func (s *Spool) readMarker() (shippedMarker, error) {
	var m shippedMarker
	b, err := os.ReadFile(filepath.Join(s.dir, markerName))
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("audit: spool marker %s is damaged: %w", filepath.Join(s.dir, markerName), err)
	}
	return m, nil
}

func (s *Spool) recover() error {
	m, err := s.readMarker()
	if err != nil {
		return err
	}
	s.shipped.Store(m.Seq)
	s.seq, s.head = m.Seq, m.Hash
	if s.head == "" {
		s.head = GenesisHash
	}
	segs, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	for len(segs) > 0 {
		last := segs[len(segs)-1]
		p := filepath.Join(s.dir, segName(last))
		lastEv, good, err := scanSegment(p)
		if err != nil {
			return err
		}
		if lastEv == nil {
			// Created by a rotation that crashed before its first record was durable.
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("audit: cannot remove empty spool segment %s: %w", p, err)
			}
			segs = segs[:len(segs)-1]
			continue
		}
		f, err := os.OpenFile(p, os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("audit: cannot open spool segment %s: %w", p, err)
		}
		if err := f.Truncate(good); err != nil { // cut a torn last record
			f.Close()
			return fmt.Errorf("audit: cannot cut torn record from %s: %w", p, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		if _, err := f.Seek(good, 0); err != nil {
			f.Close()
			return err
		}
		if lastEv.Seq >= s.seq {
			s.seq, s.head = lastEv.Seq, lastEv.Hash
		}
		s.seg, s.segFirst, s.segSize = f, last, good
		break
	}
	if s.shipped.Load() > s.seq {
		return fmt.Errorf("audit: spool %s says events up to seq %d were shipped but holds only up to %d: the spool was damaged; move it aside and check the audit store", s.dir, s.shipped.Load(), s.seq)
	}
	return nil
}

// scanSegment returns the last good record of a segment file and the offset just after
// it (the length the file must be cut to).
func scanSegment(path string) (*Event, int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("audit: cannot read spool segment %s: %w", path, err)
	}
	if len(data) < len(segMagic) {
		return nil, 0, nil
	}
	if string(data[:len(segMagic)]) != segMagic {
		return nil, 0, fmt.Errorf("audit: %s is not a govx audit spool segment", path)
	}
	var last *Event
	off := len(segMagic)
	for {
		payload, n := nextFrame(data[off:])
		if n == 0 {
			break
		}
		ev, err := unmarshalRecord(payload)
		if err != nil {
			break
		}
		last = ev
		off += n
	}
	return last, int64(off), nil
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
