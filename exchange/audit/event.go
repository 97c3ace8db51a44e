package audit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Kind is the kind of an audit event.
type Kind string

// The two kinds of event, linked by RequestID.
const (
	// KindDecision is written for every request, allowed or denied, before any data
	// leaves.
	KindDecision Kind = "decision"
	// KindComplete is written after a data-bearing response ends.
	KindComplete Kind = "complete"
	// KindGap is written by `govx audit repair` (see [Repair]) as the first event after
	// damage it moved aside: it links to the last intact event, its seq follows the lost
	// ones, and Rows says how many seqs were lost, so that verify reports the repair.
	KindGap Kind = "gap"
)

// Decision values of a decision event.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Status values of a complete event.
const (
	StatusOK      = "ok"
	StatusAborted = "aborted"
	StatusError   = "error"
)

// Event is one audit record. The exchange fills the request fields; [Spool.Append]
// fills EventID and Time when empty, and always Instance, Seq, PrevHash and Hash.
// A complete event repeats the subject, action and dataset of its decision so that it
// can be read on its own.
type Event struct {
	EventID        string    `json:"event_id"`
	Kind           Kind      `json:"kind"`
	Time           time.Time `json:"event_time"` // millisecond precision
	Instance       string    `json:"instance"`
	Seq            uint64    `json:"seq"`
	RequestID      string    `json:"request_id"`
	Department     string    `json:"department"`
	System         string    `json:"system"`
	ClientAddr     string    `json:"client_addr"`
	Action         string    `json:"action"`
	Dataset        string    `json:"dataset"`
	Columns        []string  `json:"columns"`
	Filter         string    `json:"filter"` // JSON text of the caller's row filter
	Purpose        string    `json:"purpose"`
	CaseRef        string    `json:"case_ref"`
	Keys           []string  `json:"keys"` // the keys of a lookup or verify
	Decision       string    `json:"decision"`
	Reasons        []string  `json:"reasons"`
	Agreement      string    `json:"agreement"`
	PolicyRevision string    `json:"policy_revision"`
	Rows           uint64    `json:"rows"`
	Bytes          uint64    `json:"bytes"`
	DurationMS     uint64    `json:"duration_ms"`
	Status         string    `json:"status"`
	Error          string    `json:"error"`
	PrevHash       string    `json:"prev_hash"` // hex SHA-256
	Hash           string    `json:"hash"`      // hex SHA-256

	// Set only by a spool's chain reader, for Verify: the stretch of the segment this
	// event was read from (or, with no EventID, could not be read from) is damaged; or
	// the event was stored out of seq order (where).
	damage    *Damage
	misplaced string
}

// canonicalVersion starts every canonical encoding, so a future change of the encoding
// can never produce the same bytes as this one.
const canonicalVersion = "govx-audit-v1"

// GenesisHash is the prev_hash of the first event of an instance's chain.
var GenesisHash = hex.EncodeToString(make([]byte, sha256.Size))

// Canonical returns the canonical encoding of the event, the bytes the hash chain covers.
// Every field except PrevHash and Hash is encoded, in this fixed order:
//
//	event_id, kind, event_time (Unix milliseconds), instance, seq, request_id,
//	department, system, client_addr, action, dataset, columns, filter, purpose,
//	case_ref, keys, decision, reasons, agreement, policy_revision, rows, bytes,
//	duration_ms, status, error
//
// after the text "govx-audit-v1". A string is its UTF-8 bytes preceded by their length
// as an unsigned varint; a list of strings is its length as a varint followed by each
// string; a number (and the time) is 8 bytes big-endian. The encoding is unambiguous:
// no two different events share it.
func (e *Event) Canonical() []byte {
	return e.appendCanonical(make([]byte, 0, 256))
}

func (e *Event) appendCanonical(b []byte) []byte {
	b = appendString(b, canonicalVersion)
	b = appendString(b, e.EventID)
	b = appendString(b, string(e.Kind))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixMilli()))
	b = appendString(b, e.Instance)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = appendString(b, e.RequestID)
	b = appendString(b, e.Department)
	b = appendString(b, e.System)
	b = appendString(b, e.ClientAddr)
	b = appendString(b, e.Action)
	b = appendString(b, e.Dataset)
	b = appendStrings(b, e.Columns)
	b = appendString(b, e.Filter)
	b = appendString(b, e.Purpose)
	b = appendString(b, e.CaseRef)
	b = appendStrings(b, e.Keys)
	b = appendString(b, e.Decision)
	b = appendStrings(b, e.Reasons)
	b = appendString(b, e.Agreement)
	b = appendString(b, e.PolicyRevision)
	b = binary.BigEndian.AppendUint64(b, e.Rows)
	b = binary.BigEndian.AppendUint64(b, e.Bytes)
	b = binary.BigEndian.AppendUint64(b, e.DurationMS)
	b = appendString(b, e.Status)
	b = appendString(b, e.Error)
	return b
}

// ComputeHash returns the hex SHA-256 of the event's PrevHash (as raw bytes) followed by
// its canonical encoding: the value Hash must have.
func (e *Event) ComputeHash() string {
	prev, err := hex.DecodeString(e.PrevHash)
	if err != nil || len(prev) != sha256.Size {
		// A malformed prev_hash still hashes deterministically, and can never match a
		// well-formed chain, so verification reports the event instead of crashing.
		prev = []byte(e.PrevHash)
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(e.Canonical())
	return hex.EncodeToString(h.Sum(nil))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// Spool record payload: the canonical encoding followed by the raw prev_hash and hash.
// Decoding it back gives exactly the event that was hashed.

func (e *Event) marshalRecord(b []byte) ([]byte, error) {
	prev, err := hex.DecodeString(e.PrevHash)
	if err != nil || len(prev) != sha256.Size {
		return nil, fmt.Errorf("audit: event %s has a malformed prev_hash", e.EventID)
	}
	hash, err := hex.DecodeString(e.Hash)
	if err != nil || len(hash) != sha256.Size {
		return nil, fmt.Errorf("audit: event %s has a malformed hash", e.EventID)
	}
	b = e.appendCanonical(b)
	b = append(b, prev...)
	return append(b, hash...), nil
}

var errBadRecord = errors.New("malformed audit record")

// decoder reads a record's canonical encoding from a string: every text field it
// returns is a substring of that one string, so decoding an event allocates the string
// once, not once per field.
type decoder struct {
	s    string
	slab *[]string // where lists take their entries from; nil: each list its own
	err  error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	// As binary.Uvarint, on a string.
	var x uint64
	var sh uint
	for i := 0; i < len(d.s) && i < binary.MaxVarintLen64; i++ {
		c := d.s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break // overflows 64 bits
			}
			d.s = d.s[i+1:]
			return x | uint64(c)<<sh
		}
		x |= uint64(c&0x7f) << sh
		sh += 7
	}
	d.err = errBadRecord
	return 0
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.s)) {
		d.err = errBadRecord
		return ""
	}
	v := d.s[:n]
	d.s = d.s[n:]
	return v
}

func (d *decoder) strings() []string {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.s)) { // each string takes at least one byte
		d.err = errBadRecord
		return nil
	}
	if n == 0 {
		return nil
	}
	if d.slab != nil {
		start := len(*d.slab)
		for range n {
			*d.slab = append(*d.slab, d.string())
		}
		return (*d.slab)[start:len(*d.slab):len(*d.slab)]
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.string()
	}
	return out
}

func (d *decoder) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.s) < 8 {
		d.err = errBadRecord
		return 0
	}
	var v uint64
	for i := range 8 {
		v = v<<8 | uint64(d.s[i])
	}
	d.s = d.s[8:]
	return v
}

func unmarshalRecord(b []byte) (*Event, error) {
	e := &Event{}
	var scratch []byte
	if err := decodeRecord(e, b, &scratch, nil); err != nil {
		return nil, err
	}
	return e, nil
}

// recordHashes is the size of a record's tail: the raw prev_hash and hash.
const recordHashes = 2 * sha256.Size

// decodeRecord decodes the record payload b into e, overwriting every field. The text
// of the event (its canonical encoding with the two hashes in hex) becomes one string,
// built in *scratch, and each text field is a substring of it. Lists take their
// entries from *slab when slab is not nil, so that a reader decoding many events into
// reused memory allocates one string per event and nothing else.
func decodeRecord(e *Event, b []byte, scratch *[]byte, slab *[]string) error {
	if len(b) < recordHashes {
		return errBadRecord
	}
	canon := len(b) - recordHashes
	buf := append((*scratch)[:0], b[:canon]...)
	buf = hex.AppendEncode(buf, b[canon:canon+sha256.Size])
	buf = hex.AppendEncode(buf, b[canon+sha256.Size:])
	*scratch = buf
	text := string(buf)
	d := &decoder{s: text[:canon], slab: slab}
	if d.string() != canonicalVersion {
		return errBadRecord
	}
	*e = Event{}
	e.EventID = d.string()
	e.Kind = Kind(d.string())
	e.Time = time.UnixMilli(int64(d.u64())).UTC()
	e.Instance = d.string()
	e.Seq = d.u64()
	e.RequestID = d.string()
	e.Department = d.string()
	e.System = d.string()
	e.ClientAddr = d.string()
	e.Action = d.string()
	e.Dataset = d.string()
	e.Columns = d.strings()
	e.Filter = d.string()
	e.Purpose = d.string()
	e.CaseRef = d.string()
	e.Keys = d.strings()
	e.Decision = d.string()
	e.Reasons = d.strings()
	e.Agreement = d.string()
	e.PolicyRevision = d.string()
	e.Rows = d.u64()
	e.Bytes = d.u64()
	e.DurationMS = d.u64()
	e.Status = d.string()
	e.Error = d.string()
	if d.err != nil {
		return d.err
	}
	if len(d.s) != 0 {
		return errBadRecord
	}
	e.PrevHash = text[canon : canon+2*sha256.Size]
	e.Hash = text[canon+2*sha256.Size:]
	return nil
}

// recordSeq returns the seq of the record payload b without decoding the rest: what a
// reader skipping events it does not want needs.
func recordSeq(b []byte) (uint64, bool) {
	// version, event_id, kind, event_time (8 bytes), instance, then seq.
	for i := range 4 {
		if i == 3 {
			if len(b) < 8 {
				return 0, false
			}
			b = b[8:]
		}
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return 0, false
		}
		b = b[k+int(n):]
	}
	if len(b) < 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

// NewEventID returns a random version-4 UUID in its usual text form.
func NewEventID() string {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		panic("audit: no randomness: " + err.Error()) // crypto/rand does not fail on supported systems
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}

// DataBearing reports whether an action returns data and so is followed by a complete
// event. A verify answers only match/no-match and a discover only the catalog.
func DataBearing(action string) bool {
	switch action {
	case "read", "changes", "lookup", "aggregate":
		return true
	}
	return false
}

// Limits bound the request-derived fields of an event: whatever a caller sends (a
// dataset name in a URL, a purpose, a filter, keys, a client certificate's names) ends
// up in an event that is fsynced, shipped and kept for years, so its size must not be
// the caller's choice. See [Bound].
type Limits struct {
	// Text is the most bytes of one text field (dataset, purpose, case_ref, client_addr,
	// department, system, agreement, policy_revision, error) and of one list entry.
	Text int
	// Filter is the most bytes of the filter's JSON text.
	Filter int
	// Items is the most entries of a list (columns, keys, reasons).
	Items int
	// Total, when positive, caps the whole canonical encoding (counting the event id the
	// spool adds, not the instance name); fields are cut further until it holds.
	Total int
}

// MaxUnauthenticatedEventBytes caps the canonical encoding of the event of a request
// nobody authenticated: with the per-address budget of audited failures, it bounds
// how fast an anonymous client can grow the spool.
const MaxUnauthenticatedEventBytes = 2048

// DefaultLimits are the limits of an authenticated request's event. A field of an
// honest request stays far below them: purposes and case references are refused above
// 64 characters, and a request names a few dozen columns at most.
var DefaultLimits = Limits{Text: 512, Filter: 8192, Items: 256}

// UnauthenticatedLimits are the limits of the event of a request that failed
// authentication.
var UnauthenticatedLimits = Limits{Text: 256, Filter: 512, Items: 4, Total: MaxUnauthenticatedEventBytes}

// cutMarkerMax is the longest cut marker: "…[cut: <20 digits> bytes, sha256 <64 hex>]".
const cutMarkerMax = len("…[cut: ") + 20 + len(" bytes, sha256 ") + 64 + len("]")

// Bound cuts every request-derived field of ev that is longer than lim allows. A cut
// value keeps its first bytes (at a UTF-8 boundary) and then says how long the whole
// value was and what its SHA-256 was, e.g.
//
//	population.personpopul…[cut: 900000 bytes, sha256 9f86d081…]
//
// so an auditor can still recognise it and check it against a copy of the original. A
// list longer than lim.Items keeps its first entries and ends with one entry saying how
// many were cut and the SHA-256 of the whole list's canonical encoding. Values within
// the limits are left exactly as they are, so bounding twice changes nothing. Bound
// reports whether it cut anything.
func Bound(ev *Event, lim Limits) bool {
	cut := false
	text := func(s *string, n int) {
		if v, ok := cutString(*s, n); ok {
			*s, cut = v, true
		}
	}
	list := func(l *[]string, items, n int) {
		if v, ok := cutList(*l, items, n); ok {
			*l, cut = v, true
		}
	}
	apply := func(lim Limits) {
		for _, s := range []*string{&ev.Dataset, &ev.Purpose, &ev.CaseRef, &ev.ClientAddr, &ev.Department,
			&ev.System, &ev.Action, &ev.Agreement, &ev.PolicyRevision, &ev.Error} {
			text(s, lim.Text)
		}
		text(&ev.Filter, lim.Filter)
		for _, l := range []*[]string{&ev.Columns, &ev.Keys, &ev.Reasons} {
			list(l, lim.Items, lim.Text)
		}
	}
	apply(lim)
	if lim.Total <= 0 {
		return cut
	}
	size := func() int {
		n := len(ev.Canonical())
		if ev.EventID == "" {
			n += 36 // the spool assigns a UUID
		}
		return n
	}
	// Halve the limits until the event fits. At the floor every text is at most a bare
	// marker (109 bytes) and every list a single entry (a list's marker is at most 135
	// bytes): 11 texts, 3 lists and the fields the exchange sets itself stay under
	// 1,800 bytes, so any Total of 2 KiB or more holds.
	for size() > lim.Total && (lim.Text > cutMarkerMax || lim.Items > 1 || lim.Filter > cutMarkerMax) {
		lim.Text = max(lim.Text/2, cutMarkerMax)
		lim.Filter = max(lim.Filter/2, cutMarkerMax)
		lim.Items = max(lim.Items/2, 1)
		apply(lim)
	}
	return cut
}

// cutString returns s cut to at most n bytes with its cut marker, and whether it was cut.
func cutString(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	sum := sha256.Sum256([]byte(s))
	marker := fmt.Sprintf("…[cut: %d bytes, sha256 %s]", len(s), hex.EncodeToString(sum[:]))
	return utf8Prefix(s, n-len(marker)) + marker, true
}

// cutList bounds every entry of l to n bytes and the list to items entries, the last of
// which then says how many entries were cut and the SHA-256 of the whole list.
func cutList(l []string, items, n int) ([]string, bool) {
	items = max(items, 1)
	keep := l
	if len(l) > items {
		keep = l[:items-1]
	}
	cut := len(keep) < len(l)
	for _, s := range keep {
		cut = cut || len(s) > n
	}
	if !cut {
		return l, false
	}
	out := make([]string, 0, len(keep)+1)
	for _, s := range keep {
		v, _ := cutString(s, n)
		out = append(out, v)
	}
	if len(keep) < len(l) {
		sum := sha256.Sum256(appendStrings(nil, l))
		out = append(out, fmt.Sprintf("…[cut: %d of %d entries, sha256 %s]", len(l)-len(keep), len(l), hex.EncodeToString(sum[:])))
	}
	return out, true
}

// utf8Prefix returns the longest prefix of s of at most n bytes that does not split a
// UTF-8 sequence.
func utf8Prefix(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
