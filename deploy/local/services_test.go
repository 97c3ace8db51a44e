package local

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"govx/internal/testenv"
)

// TestIntegrationKafka shows that kafka-go, the client govx uses, works against the
// Kafka 4.x broker that deploy/local/kafka.sh runs: topic creation with configs,
// keyed produce with headers and acks=all, a consumer group, and reading topic
// config back. Kafka 4 dropped many old protocol versions, so each call matters.
func TestIntegrationKafka(t *testing.T) {
	addr := testenv.Require(t, testenv.Kafka)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	topic := fmt.Sprintf("govx.test.local-%d", time.Now().UnixNano())
	client := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 30 * time.Second}
	created, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{
			Topic:             topic,
			NumPartitions:     6,
			ReplicationFactor: 1,
			ConfigEntries:     []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}},
		}},
	})
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if err := created.Errors[topic]; err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}

	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatalf("metadata for %s: %v", topic, err)
	}
	if len(meta.Topics) != 1 || len(meta.Topics[0].Partitions) != 6 {
		t.Fatalf("metadata for %s: got %+v, want one topic with 6 partitions", topic, meta.Topics)
	}

	configs, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{
		Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic,
			ResourceName: topic,
			ConfigNames:  []string{"cleanup.policy"},
		}},
	})
	if err != nil {
		t.Fatalf("describe configs of %s: %v", topic, err)
	}
	policy := ""
	for _, r := range configs.Resources {
		if r.Error != nil {
			t.Fatalf("describe configs of %s: %v", topic, r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "cleanup.policy" {
				policy = e.ConfigValue
			}
		}
	}
	if policy != "compact" {
		t.Fatalf("cleanup.policy of %s = %q, want compact", topic, policy)
	}

	const n = 60
	w := &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		BatchTimeout: 5 * time.Millisecond,
		RequiredAcks: kafka.RequireAll,
	}
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{
			Key:   []byte("11010519491231002" + strconv.Itoa(i%10) + "-" + strconv.Itoa(i)),
			Value: []byte(fmt.Sprintf(`{"n":%d,"name":"张三"}`, i)),
			Headers: []kafka.Header{
				{Key: "govx-op", Value: []byte("upsert")},
				{Key: "govx-seq", Value: []byte(strconv.Itoa(i))},
			},
		}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close writer: %v", err)
	}

	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     []string{addr},
		GroupID:     topic + ".group",
		Topic:       topic,
		StartOffset: kafka.FirstOffset,
		MinBytes:    1,
		MaxBytes:    1 << 20,
		MaxWait:     200 * time.Millisecond,
	})
	defer r.Close()
	got := map[string]kafka.Message{}
	for len(got) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("consume from %s after %d of %d messages: %v", topic, len(got), n, err)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatalf("commit offset in group: %v", err)
		}
		got[string(m.Key)] = m
	}
	partitions := map[int]bool{}
	for i, want := range msgs {
		m, ok := got[string(want.Key)]
		if !ok {
			t.Fatalf("message %d with key %s never arrived", i, want.Key)
		}
		partitions[m.Partition] = true
		if string(m.Value) != string(want.Value) {
			t.Errorf("key %s: value %q, want %q", want.Key, m.Value, want.Value)
		}
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		if h["govx-op"] != "upsert" || h["govx-seq"] != strconv.Itoa(i) {
			t.Errorf("key %s: headers %v, want govx-op=upsert govx-seq=%d", want.Key, h, i)
		}
	}
	if len(partitions) < 2 {
		t.Errorf("all %d keys landed in partitions %v; the hash balancer should spread them", n, partitions)
	}

	// The group's committed offsets must add up to what was consumed: proof that the
	// OffsetCommit/OffsetFetch versions kafka-go speaks are still served by Kafka 4.
	offs, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: topic + ".group", Topics: map[string][]int{topic: {0, 1, 2, 3, 4, 5}}})
	if err != nil {
		t.Fatalf("fetch committed offsets: %v", err)
	}
	var committed int64
	var parts []int
	for _, p := range offs.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("committed offset of partition %d: %v", p.Partition, p.Error)
		}
		if p.CommittedOffset > 0 {
			committed += p.CommittedOffset
			parts = append(parts, p.Partition)
		}
	}
	sort.Ints(parts)
	if committed != n {
		t.Errorf("committed offsets add up to %d over partitions %v, want %d", committed, parts, n)
	}
}

// TestIntegrationClickHouse shows that clickhouse-go/v2 talks to the ClickHouse 18.16
// that deploy/local/clickhouse.sh runs, in the way the audit sink must: literal DDL,
// a MergeTree partitioned by month, and batch inserts with an explicit column list
// (18.16 rejects a batch without one, and parameter-bound Exec hangs on it).
func TestIntegrationClickHouse(t *testing.T) {
	addr := testenv.Require(t, testenv.ClickHouse)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{addr},
		Auth:        clickhouse.Auth{Database: "default", Username: "default"},
		DialTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("open clickhouse %s: %v", addr, err)
	}
	defer conn.Close()
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("ping clickhouse %s: %v", addr, err)
	}

	db := fmt.Sprintf("govx_local_test_%d", time.Now().UnixNano())
	for _, ddl := range []string{
		"CREATE DATABASE " + db,
		"CREATE TABLE " + db + ".events (d Date, ts DateTime, dept String, n UInt64, note String) " +
			"ENGINE = MergeTree() PARTITION BY toYYYYMM(d) ORDER BY (dept, ts)",
	} {
		if err := conn.Exec(ctx, ddl); err != nil {
			t.Fatalf("%s: %v", ddl, err)
		}
	}
	defer conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)

	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".events (d, ts, dept, n, note)")
	if err != nil {
		t.Fatalf("prepare batch: %v", err)
	}
	base := time.Date(2026, 10, 15, 8, 0, 0, 0, time.UTC)
	const rows = 1000
	var want uint64
	for i := 0; i < rows; i++ {
		// Spread over three months so the table has several partitions.
		ts := base.Add(time.Duration(i) * 90 * time.Minute)
		if err := batch.Append(ts, ts, fmt.Sprintf("mz-33%02d", i%7), uint64(i), "读取 人口基础信息"); err != nil {
			t.Fatalf("append row %d: %v", i, err)
		}
		want += uint64(i)
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("send batch: %v", err)
	}

	var count, sum uint64
	if err := conn.QueryRow(ctx, "SELECT count(), sum(n) FROM "+db+".events").Scan(&count, &sum); err != nil {
		t.Fatalf("select count and sum: %v", err)
	}
	if count != rows || sum != want {
		t.Fatalf("count=%d sum=%d, want count=%d sum=%d", count, sum, rows, want)
	}
	var note string
	if err := conn.QueryRow(ctx, "SELECT any(note) FROM "+db+".events").Scan(&note); err != nil {
		t.Fatalf("select note: %v", err)
	}
	if note != "读取 人口基础信息" {
		t.Fatalf("note = %q, want the Chinese text back unchanged", note)
	}
	var parts uint64
	if err := conn.QueryRow(ctx, "SELECT uniqExact(partition) FROM system.parts WHERE database = '"+db+"' AND table = 'events' AND active").Scan(&parts); err != nil {
		t.Fatalf("select partitions: %v", err)
	}
	if parts < 2 {
		t.Fatalf("rows over three months landed in %d partition(s); PARTITION BY toYYYYMM(d) should give several", parts)
	}
}

// chineseRows are stored and read back by the SQL database tests: department data is
// Chinese text, and a server or driver that mangles it (latin1, 3-byte utf8) fails here.
var chineseRows = []struct{ id, name, addr string }{
	{"110105194912310021", "张三", "北京市朝阳区建国路88号"},
	{"330106199001011234", "欧阳娜娜", "浙江省杭州市西湖区文三路𠀋号"}, // 𠀋 needs 4 bytes in UTF-8
	{"440305198512127777", "李四", "广东省深圳市南山区"},
}

// TestIntegrationPostgres round-trips Chinese text through the PostgreSQL that
// deploy/local/postgres.sh runs, with pgx, and checks it has the superuser tests need.
func TestIntegrationPostgres(t *testing.T) {
	dsn := testenv.Require(t, testenv.Postgres)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to postgres: %v", err)
	}
	defer conn.Close(context.Background())

	var super bool
	if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil || !super {
		t.Fatalf("current user is superuser = %v (err %v); tests create databases and roles and need one", super, err)
	}
	table := fmt.Sprintf("local_test_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (id_number text PRIMARY KEY, name text NOT NULL, address text)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	defer conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
	for _, r := range chineseRows {
		if _, err := conn.Exec(ctx, "INSERT INTO "+table+" VALUES ($1, $2, $3)", r.id, r.name, r.addr); err != nil {
			t.Fatalf("insert %s: %v", r.id, err)
		}
	}
	for _, r := range chineseRows {
		var name, addr string
		var chars int
		if err := conn.QueryRow(ctx, "SELECT name, address, char_length(address) FROM "+table+" WHERE id_number = $1", r.id).Scan(&name, &addr, &chars); err != nil {
			t.Fatalf("select %s: %v", r.id, err)
		}
		if name != r.name || addr != r.addr || chars != len([]rune(r.addr)) {
			t.Errorf("%s: got (%q, %q, %d chars), want (%q, %q, %d chars)", r.id, name, addr, chars, r.name, r.addr, len([]rune(r.addr)))
		}
	}
}

// TestIntegrationMariaDB round-trips Chinese text, including a character outside the
// BMP that only utf8mb4 stores, through the MariaDB that deploy/local/mariadb.sh runs,
// in a database the test creates (the govx user must be allowed to).
func TestIntegrationMariaDB(t *testing.T) {
	raw := testenv.Require(t, testenv.MySQL)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s=%q is not a mysql:// URL: %v", testenv.MySQL, raw, err)
	}
	cfg := mysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	cfg.Params = map[string]string{"charset": "utf8mb4"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	dbName := fmt.Sprintf("govx_local_test_%d", time.Now().UnixNano())
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+dbName+" CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"); err != nil {
		t.Fatalf("create database as %s: %v", cfg.User, err)
	}
	defer admin.Exec("DROP DATABASE IF EXISTS " + dbName)

	cfg.DBName = dbName
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE person (id_number CHAR(18) PRIMARY KEY, name VARCHAR(64) NOT NULL, address VARCHAR(255)) DEFAULT CHARSET=utf8mb4"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	for _, r := range chineseRows {
		if _, err := db.ExecContext(ctx, "INSERT INTO person VALUES (?, ?, ?)", r.id, r.name, r.addr); err != nil {
			t.Fatalf("insert %s: %v", r.id, err)
		}
	}
	for _, r := range chineseRows {
		var name, addr string
		var chars int
		if err := db.QueryRowContext(ctx, "SELECT name, address, CHAR_LENGTH(address) FROM person WHERE id_number = ?", r.id).Scan(&name, &addr, &chars); err != nil {
			t.Fatalf("select %s: %v", r.id, err)
		}
		if name != r.name || addr != r.addr || chars != len([]rune(r.addr)) {
			t.Errorf("%s: got (%q, %q, %d chars), want (%q, %q, %d chars)", r.id, name, addr, chars, r.name, r.addr, len([]rune(r.addr)))
		}
	}
}

// TestIntegrationPython checks the interpreter that consumer-side tests run: pyarrow
// with Flight, and python-stdnum, whose Chinese ID check must agree with ours.
func TestIntegrationPython(t *testing.T) {
	py := testenv.Require(t, testenv.Python)
	script := `import pyarrow, pyarrow.flight, stdnum.cn.ric as ric
print(pyarrow.__version__)
print(ric.is_valid("11010519491231002X"), ric.is_valid("110105194912310021"))
print(pyarrow.table({"name": ["张三"]}).column("name")[0].as_py())`
	out, err := exec.Command(py, "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", py, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || lines[0] == "" || lines[1] != "True False" || lines[2] != "张三" {
		t.Fatalf("%s printed %q; want the pyarrow version, %q and %q", py, out, "True False", "张三")
	}
	t.Logf("pyarrow %s", lines[0])
}
