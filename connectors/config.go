package connectors

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"govx/internal/strictyaml"
	"govx/schemas"
)

// Config is one connector: which department's table becomes which dataset, how, and
// where to publish. It is loaded strictly from YAML (LoadConfig); see
// connectors/examples/ and docs/connectors.md.
type Config struct {
	Name         string                  `yaml:"name"`       // checkpoint key; default <department>-<dataset>
	Department   string                  `yaml:"department"` // providing department code, e.g. gab
	Dataset      string                  `yaml:"dataset"`    // e.g. population.person
	Source       SourceConfig            `yaml:"source"`
	Fields       map[string]FieldMapping `yaml:"fields"` // dataset field -> native column
	Cursor       CursorConfig            `yaml:"cursor"`
	PollInterval Duration                `yaml:"poll_interval"` // default 1s
	LookBack     Duration                `yaml:"look_back"`     // default 5m
	Deletes      DeleteConfig            `yaml:"deletes"`
	Snapshot     SnapshotConfig          `yaml:"snapshot"`
	Kafka        KafkaConfig             `yaml:"kafka"`

	file string // where it was loaded from, for messages
}

// SourceConfig says where the native rows are. Secrets (the DSN of a database server)
// come only from the environment or a file, never from the config itself.
type SourceConfig struct {
	Driver    string `yaml:"driver"`   // postgres | mysql | sqlite | csv | jsonl
	DSNEnv    string `yaml:"dsn_env"`  // name of an environment variable holding the DSN
	DSNFile   string `yaml:"dsn_file"` // or a file holding it (first line)
	Path      string `yaml:"path"`     // sqlite database or csv/jsonl file; ${VAR} expanded
	Table     string `yaml:"table"`    // [schema.]table, quoted as identifiers
	Query     string `yaml:"query"`    // or a SELECT used as a subquery (no data values in it)
	Encoding  string `yaml:"encoding"` // csv: utf-8 (default) | gb18030 | gbk
	Delimiter string `yaml:"delimiter"`
	// Timezone of timestamps stored as text without an offset (CSV, JSON lines, SQLite):
	// UTC, Asia/Shanghai (the default, as schemas.Normalize assumes) or an offset like +08:00.
	Timezone string `yaml:"timezone"`
}

// FieldMapping maps one dataset field from a native column. In YAML it is either the
// column name alone or a mapping with column, values and formats.
type FieldMapping struct {
	Column  string            `yaml:"column"`
	Values  map[string]string `yaml:"values"`  // native value -> dataset value (男 -> "1")
	Formats []string          `yaml:"formats"` // Go time layouts tried first for dates/timestamps
}

// CursorConfig is the incremental cursor: an update-time column, with the key columns as
// tie-break so that paging never skips rows sharing a timestamp.
type CursorConfig struct {
	Column string   `yaml:"column"`
	Key    []string `yaml:"key"` // native key columns; default: the columns of the dataset key
}

// DeleteConfig chooses how deletes in the source are detected.
type DeleteConfig struct {
	Column       string   `yaml:"column"`        // soft-delete column ...
	Value        string   `yaml:"value"`         // ... and the value marking a deleted row
	CompareEvery Duration `yaml:"compare_every"` // full key comparison against the topic, on this schedule
}

// SnapshotConfig tunes the first full read.
type SnapshotConfig struct {
	PageSize  int `yaml:"page_size"`  // rows per keyset page; default 10000
	RateLimit int `yaml:"rate_limit"` // rows per second at most, to spare a production database; 0 = none
}

// KafkaConfig says where to publish.
type KafkaConfig struct {
	Brokers     []string `yaml:"brokers"`
	TopicPrefix *string  `yaml:"topic_prefix"` // default "govx."
	// Pointers: an explicit 0 is an error, not the default.
	Partitions        *int        `yaml:"partitions"`         // default 6
	ReplicationFactor *int        `yaml:"replication_factor"` // default 1
	CheckpointTopic   string      `yaml:"checkpoint_topic"`   // default <prefix>connect-offsets
	DLQTopic          string      `yaml:"dlq_topic"`          // default <prefix>dlq
	Compression       string      `yaml:"compression"`        // lz4 (default) | snappy | zstd | gzip | none
	TLS               *TLSConfig  `yaml:"tls"`
	SASL              *SASLConfig `yaml:"sasl"`
}

// TLSConfig enables TLS to the brokers.
type TLSConfig struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// SASLConfig enables SASL authentication; the password comes from the environment or a file.
type SASLConfig struct {
	Mechanism    string `yaml:"mechanism"` // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
	Username     string `yaml:"username"`
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
}

// Duration is a time.Duration written as "1s", "5m" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 500ms, 1s, 5m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML accepts a bare column name or a strict mapping.
func (m *FieldMapping) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		m.Column = n.Value
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a field mapping is a column name or {column, values, formats}", n.Line)
	}
	// A custom unmarshaler loses the decoder's KnownFields, so check keys here.
	for i := 0; i < len(n.Content); i += 2 {
		switch k := n.Content[i]; k.Value {
		case "column", "values", "formats":
		default:
			return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: field %s not found in type connectors.FieldMapping", k.Line, k.Value)}}
		}
	}
	type plain FieldMapping
	return n.Decode((*plain)(m))
}

// Defaults.
const (
	DefaultPartitions   = 6
	DefaultPageSize     = 10000
	DefaultPollInterval = time.Second
	DefaultLookBack     = 5 * time.Minute
	DefaultTopicPrefix  = "govx."
)

// LoadConfig reads and checks a connector config. Unknown fields are errors naming the
// file and line; every problem found is reported at once.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("connector config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig is LoadConfig for bytes already read; file names them in messages.
func ParseConfig(file string, data []byte) (*Config, error) {
	var c Config
	if err := strictyaml.Decode(file, data, &c); err != nil {
		return nil, err
	}
	c.file = file
	if err := c.check(); err != nil {
		return nil, err
	}
	return &c, nil
}

// File returns the path the config was loaded from.
func (c *Config) File() string { return c.file }

func (c *Config) applyDefaults() {
	if c.Name == "" {
		c.Name = c.Department + "-" + c.Dataset
	}
	if c.PollInterval == 0 {
		c.PollInterval = Duration(DefaultPollInterval)
	}
	if c.LookBack == 0 {
		c.LookBack = Duration(DefaultLookBack)
	}
	if c.Snapshot.PageSize == 0 {
		c.Snapshot.PageSize = DefaultPageSize
	}
	if c.Kafka.TopicPrefix == nil {
		p := DefaultTopicPrefix
		c.Kafka.TopicPrefix = &p
	}
	if c.Kafka.Partitions == nil {
		n := DefaultPartitions
		c.Kafka.Partitions = &n
	}
	if c.Kafka.ReplicationFactor == nil {
		n := 1
		c.Kafka.ReplicationFactor = &n
	}
	if c.Kafka.CheckpointTopic == "" {
		c.Kafka.CheckpointTopic = *c.Kafka.TopicPrefix + "connect-offsets"
	}
	if c.Kafka.DLQTopic == "" {
		c.Kafka.DLQTopic = *c.Kafka.TopicPrefix + "dlq"
	}
	if c.Kafka.Compression == "" {
		c.Kafka.Compression = "lz4"
	}
	if c.Source.Encoding == "" {
		c.Source.Encoding = "utf-8"
	}
	if len(c.Cursor.Key) == 0 {
		if ds, ok := catalog().Dataset(c.Dataset); ok {
			for _, k := range ds.Key {
				if m, ok := c.Fields[k]; ok {
					c.Cursor.Key = append(c.Cursor.Key, m.Column)
				}
			}
		}
	}
}

// SetTopicPrefix overrides the topic prefix and the default topics derived from it
// (tests and the demo use it to keep runs apart).
func (c *Config) SetTopicPrefix(p string) {
	old := *c.Kafka.TopicPrefix
	c.Kafka.TopicPrefix = &p
	if c.Kafka.CheckpointTopic == old+"connect-offsets" {
		c.Kafka.CheckpointTopic = p + "connect-offsets"
	}
	if c.Kafka.DLQTopic == old+"dlq" {
		c.Kafka.DLQTopic = p + "dlq"
	}
}

// Topic returns the dataset's topic, <prefix><dataset>.
func (c *Config) Topic() string { return *c.Kafka.TopicPrefix + c.Dataset }

var sqlDrivers = map[string]bool{"postgres": true, "mysql": true, "sqlite": true}
var fileDrivers = map[string]bool{"csv": true, "jsonl": true}

func (c *Config) check() error {
	c.applyDefaults()
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if c.Department == "" {
		bad("department is required (the providing department's code, e.g. gab)")
	}
	ds, ok := catalog().Dataset(c.Dataset)
	if !ok {
		var ids []string
		for _, d := range catalog().Datasets() {
			ids = append(ids, d.ID)
		}
		bad("dataset %q is unknown (known: %s)", c.Dataset, strings.Join(ids, ", "))
	}
	s := c.Source
	switch {
	case sqlDrivers[s.Driver] || fileDrivers[s.Driver]:
	case s.Driver == "":
		bad("source.driver is required (postgres, mysql, sqlite, csv or jsonl)")
	default:
		bad("source.driver %q is unknown (postgres, mysql, sqlite, csv or jsonl)", s.Driver)
	}
	if s.Driver == "postgres" || s.Driver == "mysql" {
		if (s.DSNEnv == "") == (s.DSNFile == "") {
			bad("source: give exactly one of dsn_env (an environment variable name) or dsn_file; the DSN holds a password and never goes in the config")
		}
		if s.Path != "" {
			bad("source.path is for sqlite, csv and jsonl; %s takes dsn_env or dsn_file", s.Driver)
		}
	}
	if s.Driver == "sqlite" && s.Path == "" && s.DSNEnv == "" && s.DSNFile == "" {
		bad("source: sqlite needs path (the database file; ${VAR} is expanded)")
	}
	if fileDrivers[s.Driver] && s.Path == "" {
		bad("source: %s needs path (the export file; ${VAR} is expanded)", s.Driver)
	}
	if s.Path != "" {
		// Expanded when the source opens; checked here so that --offline reports an
		// unset variable too.
		if _, err := expandEnv("source.path", s.Path); err != nil {
			bad("%v", err)
		}
	}
	if sqlDrivers[s.Driver] && (s.Table == "") == (s.Query == "") {
		bad("source: give exactly one of table or query")
	}
	if fileDrivers[s.Driver] && (s.Table != "" || s.Query != "") {
		bad("source: table and query are for databases, not %s files", s.Driver)
	}
	switch strings.ToLower(s.Encoding) {
	case "utf-8", "utf8", "gb18030", "gbk":
	default:
		bad("source.encoding %q is unknown (utf-8, gb18030 or gbk)", s.Encoding)
	}
	if s.Encoding != "utf-8" && s.Driver != "csv" {
		bad("source.encoding applies to csv files only")
	}
	if _, err := s.location(); err != nil {
		bad("source.timezone: %v", err)
	}
	if len([]rune(s.Delimiter)) > 1 {
		bad("source.delimiter must be one character")
	}
	if ds != nil {
		names := make([]string, 0, len(c.Fields))
		for name := range c.Fields {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			m := c.Fields[name]
			f, ok := ds.Field(name)
			if !ok {
				bad("fields: %q is not a field of %s (fields: %s)", name, ds.ID, strings.Join(ds.FieldNames(), ", "))
				continue
			}
			if m.Column == "" {
				bad("fields.%s: column is required", name)
			}
			if len(m.Formats) > 0 && f.Kind() != schemas.KindDate && f.Kind() != schemas.KindTimestamp {
				bad("fields.%s: formats apply to date and timestamp fields only", name)
			}
		}
		for _, f := range ds.Fields {
			if _, ok := c.Fields[f.Name]; !ok && !f.Nullable {
				bad("fields: %s.%s is required (not nullable) but no column maps to it", ds.ID, f.Name)
			}
		}
		if len(c.Cursor.Key) == 0 {
			bad("cursor.key: map the dataset key fields (%s) or name the native key columns", strings.Join(ds.Key, ", "))
		}
	}
	if c.Cursor.Column == "" && !fileDrivers[s.Driver] {
		bad("cursor.column is required: the native update-time column (e.g. gxsj) read incrementally")
	}
	if (c.Deletes.Column == "") != (c.Deletes.Value == "") {
		bad("deletes: give both column and value for soft deletes")
	}
	if c.Snapshot.PageSize < 1 || c.Snapshot.RateLimit < 0 {
		bad("snapshot: page_size must be positive and rate_limit not negative")
	}
	for i, b := range c.Kafka.Brokers {
		v, err := expandEnv("kafka.brokers", b)
		if err != nil {
			bad("%v", err)
		}
		c.Kafka.Brokers[i] = v
	}
	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers is required (host:port of at least one broker)")
	}
	if *c.Kafka.Partitions < 1 || *c.Kafka.ReplicationFactor < 1 {
		bad("kafka: partitions (%d) and replication_factor (%d) must be positive; leave them out for the defaults (%d and 1)",
			*c.Kafka.Partitions, *c.Kafka.ReplicationFactor, DefaultPartitions)
	}
	switch c.Kafka.Compression {
	case "lz4", "snappy", "zstd", "gzip", "none":
	default:
		bad("kafka.compression %q is unknown (lz4, snappy, zstd, gzip or none)", c.Kafka.Compression)
	}
	if t := c.Kafka.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		bad("kafka.tls: give both cert_file and key_file for a client certificate")
	}
	if sa := c.Kafka.SASL; sa != nil {
		switch strings.ToUpper(sa.Mechanism) {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			bad("kafka.sasl.mechanism %q is unknown (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", sa.Mechanism)
		}
		if sa.Username == "" || (sa.PasswordEnv == "") == (sa.PasswordFile == "") {
			bad("kafka.sasl: give username and exactly one of password_env or password_file")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %s", c.file, strings.Join(errs, "\n  "))
	}
	return nil
}

// resolveDSN returns the source DSN or file path. The DSN is a secret: callers never
// print it, and errors from the source pass through a redactor built from it.
func (s SourceConfig) resolveDSN() (string, error) {
	switch {
	case s.DSNEnv != "":
		v := os.Getenv(s.DSNEnv)
		if v == "" {
			return "", fmt.Errorf("source: environment variable %s (source.dsn_env) is not set; export the database DSN in it", s.DSNEnv)
		}
		return v, nil
	case s.DSNFile != "":
		b, err := os.ReadFile(s.DSNFile)
		if err != nil {
			return "", fmt.Errorf("source.dsn_file: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if line = strings.TrimSpace(line); line == "" {
			return "", fmt.Errorf("source.dsn_file %s is empty", s.DSNFile)
		}
		return line, nil
	}
	return expandEnv("source.path", s.Path)
}

// expandEnv expands ${VAR}, ${VAR:-default} and $VAR, failing on unset variables rather than silently
// producing a path like "/gab.db".
func expandEnv(what, s string) (string, error) {
	var missing []string
	out := os.Expand(s, func(k string) string {
		k, def, hasDef := strings.Cut(k, ":-")
		v, ok := os.LookupEnv(k)
		switch {
		case ok && v != "":
			return v
		case hasDef:
			return def
		case !ok:
			missing = append(missing, k)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("%s %q: environment variable %s is not set", what, s, strings.Join(missing, ", "))
	}
	return out, nil
}

func readSecret(env, file string) (string, error) {
	if env != "" {
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", env)
		}
		return v, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// catalog is the embedded dataset catalog, loaded once; tests check it loads.
var catalog = sync.OnceValue(func() *schemas.Catalog { return schemas.MustLoad() })

// location returns the zone of offset-less text timestamps.
func (s SourceConfig) location() (*time.Location, error) {
	switch tz := s.Timezone; tz {
	case "", "Asia/Shanghai", "CST", "+08:00":
		return schemas.ChinaTime, nil
	case "UTC", "Z", "+00:00":
		return time.UTC, nil
	default:
		if t, err := time.Parse("-07:00", tz); err == nil {
			_, off := t.Zone()
			return time.FixedZone(tz, off), nil
		}
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return nil, fmt.Errorf("%q is not a time zone (UTC, Asia/Shanghai or an offset like +08:00)", tz)
		}
		return loc, nil
	}
}
