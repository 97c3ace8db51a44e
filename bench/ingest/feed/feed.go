// Package feed is what the whole-system benchmarks (bench/ingest, bench/flight,
// bench/lookup) share: deterministic synthetic population.person records, producing
// them onto a real Kafka topic as a connector would, an exchange started in-process
// against that topic with a benchmark sharing agreement, and the markdown and target
// lines the commands print for bench/run.sh.
//
// Only the commands under bench/ import it.
package feed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"govx/exchange/audit"
	"govx/exchange/auth"
	"govx/exchange/server"
	"govx/policies"
	"govx/schemas/ident"
)

// Dataset is the dataset every whole-system benchmark uses.
const Dataset = "population.person"

// FilterCounty holds one person in eight (see Person), so a filter on it keeps about
// one row in eight, as the bulk-pull target asks.
const FilterCounty = "330106"

var (
	surnames = []string{"王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "欧阳", "司马"}
	given    = []rune("伟强磊军勇杰涛斌超明芳娜敏静丽艳娟霞秀玲桂英子一文嘉安新春")
	streets  = []string{"文三路", "中山路", "解放路", "人民路", "延安路", "天目山路", "凤起路", "江南大道", "北京路", "干将路"}
	// counties has 16 slots: FilterCounty takes two, the other 13 demo counties one
	// each and Hangzhou's 上城区 a second one.
	counties []ident.Region
)

func init() {
	all := ident.DemoCounties()
	var filter, hz ident.Region
	for _, c := range all {
		switch c.Code {
		case FilterCounty:
			filter = c
		case "330102":
			hz = c
		}
	}
	counties = append(counties, filter, filter, hz)
	for _, c := range all {
		if c.Code != FilterCounty {
			counties = append(counties, c)
		}
	}
	if len(counties) != 16 || filter.Code == "" || hz.Code == "" {
		panic(fmt.Sprintf("feed: the demo counties changed (%d slots); fix the 1-in-8 layout", len(counties)))
	}
}

// mix is splitmix64: a cheap stateless hash, so Person(i) depends on i alone.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Person is one population.person record, with the fields in canonical JSON form.
type Person struct {
	IDNumber        string `json:"id_number"`
	Name            string `json:"name"`
	Gender          string `json:"gender"`
	BirthDate       string `json:"birth_date"`
	Ethnicity       string `json:"ethnicity"`
	HouseholdRegion string `json:"household_region"`
	Address         string `json:"address"`
	Phone           string `json:"phone"`
	Status          string `json:"status"`
	UpdatedAt       string `json:"updated_at"`
}

// MakePerson returns person i: a pure function of i, so any command can regenerate the
// key and values of any person (lookups, verify claims, the PostgreSQL copy). IDs are
// unique for i below 8.7M: (birth date, sequence) never repeats.
func MakePerson(i int) Person {
	h := mix(uint64(i))
	c := counties[h%16]
	birth := time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, (i/1000)*3)
	body := c.Code + birth.Format("20060102") + fmt.Sprintf("%03d", i%1000)
	cc, _ := ident.CitizenIDCheckChar(body)
	var name strings.Builder
	name.WriteString(surnames[(h>>8)%uint64(len(surnames))])
	for k := range 1 + int((h>>16)%2) {
		name.WriteRune(given[(h>>(20+5*k))%uint64(len(given))])
	}
	return Person{
		IDNumber:        body + string(cc),
		Name:            name.String(),
		Gender:          strconv.Itoa(1 + int((h>>32)%2)),
		BirthDate:       birth.Format(time.DateOnly),
		Ethnicity:       "01",
		HouseholdRegion: c.Code,
		Address:         c.ProvinceName + c.CityName + c.Name + streets[(h>>36)%uint64(len(streets))] + strconv.Itoa(1+int((h>>40)%899)) + "号",
		Phone:           fmt.Sprintf("13%09d", (h>>20)%1_000_000_000),
		Status:          "alive",
		UpdatedAt:       time.Date(2026, 9, 30, 8, 0, 0, 0, time.UTC).Add(time.Duration((h>>44)%1_000_000) * time.Second).Format(time.RFC3339),
	}
}

// RandomSuffix returns 8 random hex digits for topic prefixes and database names.
func RandomSuffix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Topic is the topic of Dataset under prefix.
func Topic(prefix string) string { return prefix + Dataset }

// Persons returns the topic prefix whose person topic holds n persons: prefix itself when
// one is given (an existing topic, e.g. kept by bench/ingest -keep), else a fresh prefix
// whose topic it produces now (6 partitions). The returned cleanup deletes the topic it
// produced, and does nothing for a given one.
func Persons(ctx context.Context, broker, prefix string, n int) (string, func(), error) {
	if prefix != "" {
		return prefix, func() {}, nil
	}
	prefix = "govxbench" + RandomSuffix() + "."
	cleanup := func() { DeleteTopic(broker, Topic(prefix)) }
	log.Printf("producing %d persons", n)
	if _, err := Produce(ctx, broker, Topic(prefix), 6, n); err != nil {
		cleanup()
		return "", nil, err
	}
	return prefix, cleanup, nil
}

// Produce creates the compacted topic with partitions partitions and writes persons
// 0..n-1 to it as a connector does (key = id_number, JSON value, the contract's
// headers, lz4, acks=all), returning the bytes of keys and values written.
func Produce(ctx context.Context, broker, topic string, partitions, n int) (int64, error) {
	client := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 30 * time.Second}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}},
	}}})
	if err != nil {
		return 0, fmt.Errorf("create topic %s: %w", topic, err)
	}
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return 0, fmt.Errorf("create topic %s: %w", topic, err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: topic, Balancer: &kafka.Hash{},
		BatchSize: 5000, BatchBytes: 8 << 20, BatchTimeout: 20 * time.Millisecond,
		Compression: kafka.Lz4, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	headers := []kafka.Header{{Key: "govx-op", Value: []byte("upsert")}, {Key: "govx-dataset", Value: []byte(Dataset)},
		{Key: "govx-schema-version", Value: []byte("1")}, {Key: "govx-source", Value: []byte("gab")}}
	var bytes int64
	const chunk = 60000 // spread over the partitions, so each batch fills
	msgs := make([]kafka.Message, 0, chunk)
	for i := 0; i < n; {
		msgs = msgs[:0]
		for ; len(msgs) < chunk && i < n; i++ {
			p := MakePerson(i)
			v, _ := json.Marshal(p)
			msgs = append(msgs, kafka.Message{Key: []byte(p.IDNumber), Value: v, Headers: headers})
			bytes += int64(len(p.IDNumber) + len(v))
		}
		if err := writeRetrying(ctx, w, msgs); err != nil {
			return bytes, fmt.Errorf("produce to %s: %w", topic, err)
		}
	}
	return bytes, nil
}

// writeRetrying retries while a new topic's metadata propagates.
func writeRetrying(ctx context.Context, w *kafka.Writer, msgs []kafka.Message) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := w.WriteMessages(ctx, msgs...)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// DeleteTopic removes topic (the benchmarks' topics are large; the broker is shared).
func DeleteTopic(broker, topic string) error {
	client := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 30 * time.Second}
	resp, err := client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err != nil {
		return err
	}
	return resp.Errors[topic]
}

// EndOffsets returns the end offset of every partition of topic.
func EndOffsets(ctx context.Context, broker, topic string) (map[int]int64, error) {
	conn, err := kafka.DialContext(ctx, "tcp", broker)
	if err != nil {
		return nil, err
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil, err
	}
	ends := map[int]int64{}
	for _, p := range parts {
		lc, err := kafka.DialLeader(ctx, "tcp", broker, topic, p.ID)
		if err != nil {
			return nil, err
		}
		ends[p.ID], err = lc.ReadLastOffset()
		lc.Close()
		if err != nil {
			return nil, err
		}
	}
	return ends, nil
}

// Bench agreement: a national department system reading every person with six of the
// ten columns (projection) and two masks (id_card, name). The shipped agreements are
// scoped to one city or province; the targets name every row of 1M persons.
const (
	Subject = "rs-33/bench"
	Purpose = "benchmark-measurement"
)

// Columns and Masks are what the bench agreement grants.
var (
	Columns = []string{"id_number", "name", "gender", "birth_date", "household_region", "status"}
	Masks   = map[string]string{"id_number": "id_card", "name": "name"}
)

const benchAgreement = `
  - id: AGR-BENCH-0001
    title: 基准测试 — 全国人口基础信息（两项脱敏）
    consumer: rs-33
    system: bench
    dataset: population.person
    purposes: [benchmark-measurement]
    columns: [id_number, name, gender, birth_date, household_region, status]
    unmasked: [gender, birth_date, household_region, status]
    masks: {id_number: id_card, name: name}
    region: "000000"
    actions: [read, lookup, verify, discover]
    max_rows: 10000000
    valid_from: 2026-01-01
    valid_until: 2030-12-31
    approval: 基准〔2026〕1号
    # The lookup benchmark checks thousands of keys, each several times, a second.
    key_budget: {verify_per_key: 1000000, lookup_per_key: 1000000, distinct_keys: 100000000}
`

// WritePolicies writes the shipped policies into dir and adds the bench agreement.
func WritePolicies(dir string) error {
	if err := policies.CopyEmbedded(dir); err != nil {
		return err
	}
	return AppendAgreement(dir)
}

// AppendAgreement adds the bench agreement to the agreements of the policies in dir
// (a running exchange watching dir reloads them).
func AppendAgreement(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, "agreements.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(benchAgreement); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ExchangeOptions say how to start a benchmark exchange.
type ExchangeOptions struct {
	Dir        string // state: data, tokens, spool, policies
	Broker     string
	Prefix     string
	ClickHouse string // native address of the audit sink; empty: spool only
	CHDatabase string
}

// Config returns the exchange config for o, on free loopback ports.
func (o ExchangeOptions) Config() (*server.Config, error) {
	cfg := server.Defaults(o.Dir)
	cfg.FlightAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Kafka.Brokers = []string{o.Broker}
	cfg.Kafka.TopicPrefix = o.Prefix
	cfg.Datasets = []string{Dataset}
	cfg.PoliciesDir = filepath.Join(o.Dir, "policies")
	cfg.SnapshotInterval = time.Hour // a snapshot mid-measurement would be measured too
	if o.ClickHouse != "" {
		cfg.Audit.ClickHouse.Addr = o.ClickHouse
		cfg.Audit.ClickHouse.Database = o.CHDatabase
	}
	if _, err := os.Stat(cfg.PoliciesDir); errors.Is(err, os.ErrNotExist) {
		if err := WritePolicies(cfg.PoliciesDir); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// Start starts the exchange for cfg and waits until it has caught up with Kafka,
// returning how long that took from the call.
func Start(ctx context.Context, cfg *server.Config, timeout time.Duration) (*server.Exchange, time.Duration, error) {
	t0 := time.Now()
	x, err := server.Start(ctx, cfg, server.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		return nil, 0, err
	}
	// A part that stops (ingest failing, say) never makes the exchange ready: report it
	// at once rather than at the timeout.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		select {
		case <-x.Ready():
			return x, time.Since(t0), nil
		case <-tick.C:
			if err := x.Err(); err != nil {
				x.Close()
				return nil, 0, fmt.Errorf("exchange stopped before it was ready: %w", err)
			}
		case <-deadline:
			err := x.Err()
			x.Close()
			return nil, 0, fmt.Errorf("exchange not ready after %v (err: %v)", timeout, err)
		}
	}
}

// Token issues a token for the bench subject in cfg's token file.
func Token(cfg *server.Config) (string, error) {
	subj, err := auth.ParseSubject(Subject)
	if err != nil {
		return "", err
	}
	tok, _, err := auth.OpenTokens(cfg.TokensFile).Issue(subj, "benchmark")
	return tok, err
}

// Machine describes where a benchmark ran, for the command's header line.
func Machine() string {
	gogc := os.Getenv("GOGC")
	if gogc == "" {
		gogc = "100 (default)"
	}
	return fmt.Sprintf("%s, %d CPUs, GOMAXPROCS=%d, GOGC=%s", runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), gogc)
}

// Target prints a line bench/run.sh turns into a row of the targets table:
// @target|key|ours|baseline|ratio|pass|command. pass is "pass", "miss" or "—".
func Target(key, ours, baseline, ratio string, pass bool, command string) {
	p := "miss"
	if pass {
		p = "pass"
	}
	fmt.Printf("@target|%s|%s|%s|%s|%s|%s\n", key, ours, baseline, ratio, p, command)
}

// Command renders the command line that reproduces this run.
func Command(pkg string, args []string) string {
	return strings.TrimSpace("go run ./" + pkg + " " + strings.Join(args, " "))
}

// Percentile returns the p-th percentile (0..100) of sorted durations.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p/100))]
}

// Sorted returns a sorted copy.
func Sorted(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// Ms formats a duration in milliseconds.
func Ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

// DropClickHouseDatabase removes a benchmark's audit database.
func DropClickHouseDatabase(addr, db string) error {
	ch, err := audit.NewClickHouse(audit.ClickHouseConfig{Addr: addr, Database: db})
	if err != nil {
		return err
	}
	defer ch.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := ch.Conn(ctx)
	if err != nil {
		return err
	}
	return conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
}

// StartProfile starts a CPU profile into path (nothing when path is empty) and returns
// the function that stops it.
func StartProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// StartRetrying is Start for commands that do not time the start: when the exchange
// stops before it is ready (the shared broker restarting under another test, say), it
// waits and tries again, up to attempts times.
func StartRetrying(ctx context.Context, cfg *server.Config, timeout time.Duration, attempts int) (*server.Exchange, error) {
	x, _, err := StartRetryingTimed(ctx, cfg, timeout, attempts)
	return x, err
}

// StartRetryingTimed is StartRetrying returning the time to ready of the attempt that
// succeeded.
func StartRetryingTimed(ctx context.Context, cfg *server.Config, timeout time.Duration, attempts int) (*server.Exchange, time.Duration, error) {
	var err error
	for i := range attempts {
		var x *server.Exchange
		var ready time.Duration
		if x, ready, err = Start(ctx, cfg, timeout); err == nil {
			return x, ready, nil
		}
		log.Printf("exchange start %d of %d failed: %v", i+1, attempts, err)
		time.Sleep(5 * time.Second)
	}
	return nil, 0, err
}

// OpenLoop sends rate×dur requests at fixed intervals from up to workers goroutines and
// returns each request's latency measured from its scheduled send time (sorted), the
// requests that failed and the rate achieved. A stall delays every request scheduled
// during it, and each such request counts it: no coordinated omission.
func OpenLoop(rate int, dur time.Duration, workers int, do func(i int) error) ([]time.Duration, int64, float64) {
	lat, _, errs, achieved := OpenLoopTimed(rate, dur, workers, do)
	return Sorted(lat), errs, achieved
}

// OpenLoopTimed is OpenLoop returning the latencies in schedule order (request i was
// due at start + i/rate), for lining the slow ones up with what the server was doing.
func OpenLoopTimed(rate int, dur time.Duration, workers int, do func(i int) error) (lat []time.Duration, start time.Time, errs int64, achieved float64) {
	n := int(float64(rate) * dur.Seconds())
	interval := time.Second / time.Duration(rate)
	lat = make([]time.Duration, n)
	jobs := make(chan int, n)
	var failed atomic.Int64
	var firstErr sync.Once
	start = time.Now().Add(5 * time.Millisecond)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				sched := start.Add(time.Duration(i) * interval)
				if err := do(i); err != nil {
					failed.Add(1)
					firstErr.Do(func() { log.Printf("first error: %v", err) })
				}
				lat[i] = time.Since(sched)
			}
		}()
	}
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return lat, start, failed.Load(), float64(n) / time.Since(start).Seconds()
}
