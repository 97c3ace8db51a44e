package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/segmentio/kafka-go"

	"govx/internal/testenv"
	"govx/schemas/ident"
)

// person is a generated population.person record and what the test expects of it.
type person map[string]any

var testCounties = []string{"330106", "330108", "320102", "330203"} // Hangzhou ×2, Nanjing, Ningbo

// makePersons returns n valid persons spread over testCounties, deterministically.
func makePersons(t testing.TB, n int, seed uint64) []person {
	r := mrand.New(mrand.NewPCG(seed, 7))
	surnames := []string{"张", "王", "李", "欧阳", "陈"}
	given := []string{"三", "娜娜", "伟", "芳", "建国"}
	out := make([]person, 0, n)
	for i := 0; i < n; i++ {
		county := testCounties[i%len(testCounties)]
		birth := time.Date(1950+r.IntN(60), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
		body := fmt.Sprintf("%s%s%03d", county, birth.Format("20060102"), i%1000)
		c, err := ident.CitizenIDCheckChar(body)
		if err != nil {
			t.Fatal(err)
		}
		gender := "1"
		if (i%1000)%2 == 0 {
			gender = "2"
		}
		reg, _ := ident.LookupRegion(county)
		out = append(out, person{
			"id_number": body + string(c), "name": surnames[i%5] + given[(i/5)%5], "gender": gender,
			"birth_date": birth.Format(time.DateOnly), "ethnicity": "01", "household_region": county,
			"address": reg.ProvinceName + reg.CityName + reg.Name + fmt.Sprintf("某路%d号", i),
			"phone":   fmt.Sprintf("138%08d", i), "status": "alive",
			"updated_at": time.Date(2026, 11, 1, 0, 0, i%60, 0, time.UTC).Format(time.RFC3339),
		})
	}
	return out
}

func randomSuffix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// produce writes records (nil value: a tombstone) to prefix+dataset on the real broker,
// creating the topic (3 partitions, compacted) first.
func produce(t testing.TB, brokers, topic string, recs map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers), Timeout: 30 * time.Second}
	if _, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: 3, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}},
	}}}); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: topic, Balancer: &kafka.Hash{}, BatchTimeout: 5 * time.Millisecond,
		RequiredAcks: kafka.RequireAll, AllowAutoTopicCreation: false}
	defer w.Close()
	var msgs []kafka.Message
	for k, v := range recs {
		m := kafka.Message{Key: []byte(k), Headers: []kafka.Header{{Key: "govx-op", Value: []byte("upsert")}}}
		if v == nil {
			m.Headers[0].Value = []byte("delete")
		} else {
			m.Value, _ = json.Marshal(v)
		}
		msgs = append(msgs, m)
	}
	// Topic metadata may still be propagating: retry until it has.
	testenv.WaitForState(t, 30*time.Second, "a produce to "+topic+" to succeed", func() (bool, string) {
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// clickhouseDB creates a fresh database for the test's audit table and returns its name
// and a connection for queries.
func clickhouseDB(t testing.TB) (string, clickhouse.Conn) {
	addr := testenv.Require(t, testenv.ClickHouse)
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	db := "govx_x_" + randomSuffix()
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		conn.Close()
	})
	return db, conn
}

func inCity(p person, city string) bool {
	return strings.HasPrefix(p["household_region"].(string), city)
}
