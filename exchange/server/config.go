package server

import (
	"crypto/rand"
	"errors"
	"fmt"
	"govx/internal/strictyaml"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config is the exchange's configuration file (`govx exchange serve -c FILE`). Unknown
// fields are errors naming the file and line. Relative paths are relative to the file.
type Config struct {
	// FlightAddr and HTTPAddr are where the exchange listens: loopback unless set.
	FlightAddr string `yaml:"flight_addr"`
	HTTPAddr   string `yaml:"http_addr"`
	// FlightAdvertise is the host:port clients reach this replica's Flight port at,
	// named in every FlightInfo endpoint: a ticket is redeemed only by the replica that
	// issued it, so behind a load balancer each replica advertises its own address.
	// Empty: no location (the client redeems where it asked, right for one exchange).
	FlightAdvertise string `yaml:"flight_advertise"`
	Kafka           struct {
		Brokers     []string `yaml:"brokers"`
		TopicPrefix string   `yaml:"topic_prefix"`
	} `yaml:"kafka"`
	// Datasets served; empty means every dataset in the schemas.
	Datasets []string `yaml:"datasets"`
	// DataDir keeps the store's snapshots, so a restart serves the same data at once.
	DataDir string `yaml:"data_dir"`
	// SnapshotInterval is how often the store is written to DataDir (default 1m).
	SnapshotInterval time.Duration `yaml:"snapshot_interval"`
	Store            struct {
		// MemoryLimit is the memory (bytes) the exchange may use: the Go runtime's soft
		// limit and GC pacing are set from it (memory.go). 0: the cgroup's limit, if any.
		MemoryLimit int64 `yaml:"memory_limit"`
	} `yaml:"store"`
	// PoliciesDir holds the Rego policies and agreement data; empty means the shipped
	// ones. A directory is watched and reloaded on change.
	PoliciesDir string `yaml:"policies_dir"`
	// TokensFile holds the SHA-256 hashes of the department systems' tokens.
	TokensFile string `yaml:"tokens_file"`
	// SecretFile holds the secret that signs tickets and cursors and keys the hash mask
	// (created with 32 random bytes if missing). Replicas share it.
	SecretFile string `yaml:"secret_file"`
	Audit      struct {
		SpoolDir   string `yaml:"spool_dir"`
		Instance   string `yaml:"instance"`
		SigningKey string `yaml:"signing_key"` // Ed25519 private key (`govx audit keygen`); created if missing
		Checkpoint string `yaml:"checkpoints"` // signed chain heads, kept apart from ClickHouse
		// FreeSpaceReserve is the free space (bytes) the spool keeps on its file system:
		// below it requests are refused before the disk is full. Unset: the smaller of
		// 1 GiB and 5% of the file system; 0: no reserve.
		FreeSpaceReserve *int64 `yaml:"free_space_reserve"`
		ClickHouse       struct {
			Addr        string `yaml:"addr"` // empty: the local spool is the audit store
			Database    string `yaml:"database"`
			Table       string `yaml:"table"`
			Username    string `yaml:"username"`
			PasswordEnv string `yaml:"password_env"` // the password is read from this variable, never the file
		} `yaml:"clickhouse"`
	} `yaml:"audit"`
	TLS struct {
		Cert     string `yaml:"cert"`
		Key      string `yaml:"key"`
		ClientCA string `yaml:"client_ca"` // when set, client certificates are verified (mTLS)
		// CRL is the client CAs' revocation list (`govx pki crl`), looked at every second
		// and reloaded when it changes. While it cannot be loaded or is past its next
		// update, every client certificate is refused.
		CRL string `yaml:"crl"`
	} `yaml:"tls"`
	// Ops is the operations listener: /healthz, /readyz and /metrics apart from the API.
	Ops struct {
		// Listen is its address (plain HTTP: a private address for probes and
		// Prometheus). Empty: the three are served on http_addr, as on a developer's
		// loopback.
		Listen string `yaml:"listen"`
		// AlsoOnAPI keeps them on http_addr too, with listen set (a load balancer that
		// can only probe the API port).
		AlsoOnAPI bool `yaml:"also_on_api"`
	} `yaml:"ops"`
	// Console is the web console (exchange/console) for department users, stewards, the
	// data authority and auditors, on a listener of its own.
	Console struct {
		// Listen is its address; empty: no console (the default in production).
		Listen string `yaml:"listen"`
		// IdleTimeout ends a session unused this long (default 15m).
		IdleTimeout time.Duration `yaml:"idle_timeout"`
	} `yaml:"console"`
	RateLimit struct {
		PerSecond float64 `yaml:"per_second"` // per department; 0: none
		Burst     int     `yaml:"burst"`
		// PullsInProgress bounds the pulls one department streams at once; 0: the
		// default (service.DefaultPullsInProgress).
		PullsInProgress int `yaml:"pulls_in_progress"`
		// PullStallTimeout ends a pull whose client took nothing of it this long; 0:
		// the default (service.DefaultPullStallTimeout).
		PullStallTimeout time.Duration `yaml:"pull_stall_timeout"`
	} `yaml:"rate_limit"`
	TicketTTL time.Duration `yaml:"ticket_ttl"`
	// Applications is the sharing application process's state.
	Applications struct {
		// Database is a PostgreSQL URL (postgres://…); empty: SQLite, applications.db in
		// data_dir. The password may be given in the URL or by PGPASSWORD.
		Database string `yaml:"database"`
	} `yaml:"applications"`
}

// LoadConfig reads and checks a config file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := strictyaml.Decode(path, data, &c); err != nil {
		return nil, err
	}
	c.resolve(filepath.Dir(path))
	if err := c.Check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// Defaults returns a config for an exchange keeping its state under dir, as the demo
// runs it.
func Defaults(dir string) *Config {
	c := &Config{}
	c.Kafka.Brokers = []string{"127.0.0.1:9092"}
	c.resolve(dir)
	return c
}

func (c *Config) resolve(base string) {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.FlightAddr, "127.0.0.1:8815")
	def(&c.HTTPAddr, "127.0.0.1:8080")
	def(&c.Kafka.TopicPrefix, "govx.")
	def(&c.DataDir, "exchange-data")
	def(&c.TokensFile, "tokens.json")
	def(&c.SecretFile, "exchange.secret")
	def(&c.Audit.SpoolDir, "audit-spool")
	def(&c.Audit.Instance, "exchange-1")
	def(&c.Audit.SigningKey, "audit.key")
	def(&c.Audit.Checkpoint, "audit.checkpoints")
	for _, p := range []*string{&c.DataDir, &c.TokensFile, &c.SecretFile, &c.Audit.SpoolDir, &c.Audit.SigningKey,
		&c.Audit.Checkpoint, &c.PoliciesDir, &c.TLS.Cert, &c.TLS.Key, &c.TLS.ClientCA, &c.TLS.CRL} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = time.Minute
	}
	if c.TicketTTL == 0 {
		c.TicketTTL = 5 * time.Minute
	}
}

// checkListeners checks every listener's address — host:port with a port of 0–65535 —
// and that no two of them would bind the same port on overlapping hosts (127.0.0.1 and
// localhost, or a wildcard host and any other), which serve would find only at bind time.
func (c *Config) checkListeners() []error {
	type listener struct{ name, addr, example, what string }
	ls := []listener{{"flight_addr", c.FlightAddr, "127.0.0.1:8815", "each listener"}, {"http_addr", c.HTTPAddr, "127.0.0.1:8080", "each listener"}}
	if c.Ops.Listen != "" {
		ls = append(ls, listener{"ops.listen", c.Ops.Listen, "127.0.0.1:9090", "the operations listener"})
	}
	if c.Console.Listen != "" {
		ls = append(ls, listener{"console.listen", c.Console.Listen, "127.0.0.1:8090", "the console"})
	}
	var errs []error
	type bound struct {
		name, host string
		port       int
	}
	var seen []bound
	for _, l := range ls {
		host, p, err := net.SplitHostPort(l.addr)
		var port int
		if err == nil {
			port, err = net.LookupPort("tcp", p)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port with a port of 0–65535, e.g. %s", l.name, l.addr, l.example))
			continue
		}
		for _, b := range seen {
			if port != 0 && b.port == port && hostsOverlap(b.host, host) {
				if b.name == "flight_addr" && l.name == "http_addr" {
					errs = append(errs, fmt.Errorf("flight_addr and http_addr are both %s: give each listener an address of its own", l.addr))
				} else {
					errs = append(errs, fmt.Errorf("%s %s: give %s an address of its own (%s binds port %d on the same host)", l.name, l.addr, l.what, b.name, port))
				}
				break
			}
		}
		seen = append(seen, bound{l.name, host, port})
	}
	return errs
}

// hostsOverlap reports whether listening on a and on b (the hosts of two listen
// addresses) with the same port would collide: a wildcard host takes the port on every
// address, and localhost is 127.0.0.1 (where Go listens for it).
func hostsOverlap(a, b string) bool {
	norm := func(h string) string {
		switch h {
		case "", "0.0.0.0", "::":
			return "*"
		case "localhost":
			return "127.0.0.1"
		}
		return h
	}
	a, b = norm(a), norm(b)
	return a == "*" || b == "*" || a == b
}

// Check reports every problem in the config at once.
func (c *Config) Check() error {
	var errs []error
	errs = append(errs, c.checkListeners()...)
	for name, d := range map[string]time.Duration{"ticket_ttl": c.TicketTTL, "snapshot_interval": c.SnapshotInterval} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s: want a positive duration, e.g. 5m (unset: the default)", name, d))
		}
	}
	if c.FlightAdvertise != "" {
		if host, _, err := net.SplitHostPort(c.FlightAdvertise); err != nil || host == "" {
			errs = append(errs, fmt.Errorf("flight_advertise %q: want the host:port clients reach this replica at, e.g. exchange-0.govx:8815", c.FlightAdvertise))
		}
	}
	if err := checkMemoryLimit(c.Store.MemoryLimit); err != nil {
		errs = append(errs, err)
	}
	if len(c.Kafka.Brokers) == 0 {
		errs = append(errs, errors.New("kafka.brokers: name at least one broker (host:port)"))
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		errs = append(errs, errors.New("tls: give both cert and key, or neither"))
	}
	if c.TLS.ClientCA != "" && c.TLS.Cert == "" {
		errs = append(errs, errors.New("tls.client_ca needs tls.cert and tls.key: mutual TLS runs over TLS"))
	}
	if c.TLS.CRL != "" && c.TLS.ClientCA == "" {
		errs = append(errs, errors.New("tls.crl needs tls.client_ca: the list revokes client certificates of those CAs"))
	}
	if c.Ops.Listen == "" && c.Ops.AlsoOnAPI {
		errs = append(errs, errors.New("ops.also_on_api needs ops.listen: without it the operations endpoints are on http_addr already"))
	}
	if db := c.Applications.Database; strings.Contains(db, "://") && !strings.HasPrefix(db, "postgres://") && !strings.HasPrefix(db, "postgresql://") {
		scheme, _, _ := strings.Cut(db, "://")
		errs = append(errs, fmt.Errorf("applications.database: %s:// is not a database the exchange keeps applications in; give a PostgreSQL URL (postgres://…) or a SQLite file path", scheme))
	}
	if c.Console.IdleTimeout < 0 {
		errs = append(errs, errors.New("console.idle_timeout must not be negative"))
	}
	if c.RateLimit.PerSecond < 0 || c.RateLimit.Burst < 0 || c.RateLimit.PullsInProgress < 0 || c.RateLimit.PullStallTimeout < 0 {
		errs = append(errs, errors.New("rate_limit: per_second, burst, pulls_in_progress and pull_stall_timeout must not be negative"))
	}
	if d := c.RateLimit.PullStallTimeout; d > 0 && d < 10*time.Second {
		errs = append(errs, fmt.Errorf("rate_limit.pull_stall_timeout %s: a client pausing for a garbage collection or a busy moment, or reading over a slow line, would lose its pull; give at least 10s (default 2m)", d))
	} else if d > 24*time.Hour {
		errs = append(errs, fmt.Errorf("rate_limit.pull_stall_timeout %s: a pull nobody read for a day holds its department's place and memory for nothing; give at most 24h (default 2m)", d))
	}
	if c.RateLimit.PerSecond > 0 && c.RateLimit.Burst == 0 {
		c.RateLimit.Burst = int(c.RateLimit.PerSecond) + 1
	}
	if c.Audit.ClickHouse.PasswordEnv != "" && strings.ContainsAny(c.Audit.ClickHouse.PasswordEnv, " =") {
		errs = append(errs, errors.New("audit.clickhouse.password_env names an environment variable, not the password"))
	}
	return errors.Join(errs...)
}

// readOrCreateSecret returns the secret in path, creating 32 random bytes there (mode
// 0600) the first time.
func readOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) < 32 {
			return nil, fmt.Errorf("secret file %s holds %d bytes; it needs at least 32", path, len(b))
		}
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return b, os.WriteFile(path, b, 0o600)
}
