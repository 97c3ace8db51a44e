package connectors

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"govx/internal/backoff"
)

// kafkaConn holds what every Kafka call of a connector shares: addresses, TLS, SASL.
type kafkaConn struct {
	cfg       KafkaConfig
	addr      net.Addr
	transport *kafka.Transport
	client    *kafka.Client
}

func newKafkaConn(cfg KafkaConfig) (*kafkaConn, error) {
	var tlsCfg *tls.Config
	if t := cfg.TLS; t != nil {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka.tls.ca_file %s holds no PEM certificate", t.CAFile)
			}
			tlsCfg.RootCAs = pool
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("kafka.tls: client certificate: %w", err)
			}
			tlsCfg.Certificates = []tls.Certificate{cert}
		}
	}
	var mech sasl.Mechanism
	if s := cfg.SASL; s != nil {
		pw, err := readSecret(s.PasswordEnv, s.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.sasl password: %w", err)
		}
		switch strings.ToUpper(s.Mechanism) {
		case "PLAIN":
			mech = plain.Mechanism{Username: s.Username, Password: pw}
		case "SCRAM-SHA-256", "SCRAM-SHA-512":
			algo := scram.SHA256
			if strings.HasSuffix(strings.ToUpper(s.Mechanism), "512") {
				algo = scram.SHA512
			}
			mech, err = scram.Mechanism(algo, s.Username, pw)
			if err != nil {
				return nil, fmt.Errorf("kafka.sasl: %w", err)
			}
		}
	}
	tr := &kafka.Transport{TLS: tlsCfg, SASL: mech, ClientID: "govx-connector", DialTimeout: 5 * time.Second, MetadataTTL: 2 * time.Second}
	addr := kafka.TCP(cfg.Brokers...)
	return &kafkaConn{cfg: cfg, addr: addr, transport: tr,
		client: &kafka.Client{Addr: addr, Transport: tr, Timeout: 30 * time.Second}}, nil
}

func (k *kafkaConn) close() { k.transport.CloseIdleConnections() }

// ping asks the cluster for its metadata: it proves the address, TLS and SASL settings.
func (k *kafkaConn) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := k.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}})
	if err != nil {
		return fmt.Errorf("kafka %s: %w (check kafka.brokers, tls and sasl)", strings.Join(k.cfg.Brokers, ","), err)
	}
	return nil
}

// ensureTopic creates topic if it is missing; an existing topic is left as it is.
func (k *kafkaConn) ensureTopic(ctx context.Context, topic string, partitions int, compact bool) error {
	tc := kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: *k.cfg.ReplicationFactor}
	if compact {
		tc.ConfigEntries = []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}
	}
	resp, err := k.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{tc}})
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	return k.waitTopic(ctx, topic)
}

// waitTopic waits until every partition of topic has a leader, so the first write does
// not spend its retries on a topic still being created.
func (k *kafkaConn) waitTopic(ctx context.Context, topic string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := k.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) > 0 {
			ok := true
			for _, p := range md.Topics[0].Partitions {
				if p.Error != nil || p.Leader.ID < 0 {
					ok = false
				}
			}
			if ok {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err == nil && len(md.Topics) == 1 {
				err = md.Topics[0].Error
			}
			return fmt.Errorf("topic %s has no leader after 30s: %v", topic, err)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func (k *kafkaConn) partitions(ctx context.Context, topic string) ([]int, error) {
	md, err := k.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	if len(md.Topics) != 1 {
		return nil, fmt.Errorf("topic %s: no metadata", topic)
	}
	if err := md.Topics[0].Error; err != nil {
		if errors.Is(err, kafka.UnknownTopicOrPartition) {
			return nil, nil
		}
		return nil, fmt.Errorf("topic %s: %w", topic, err)
	}
	var ps []int
	for _, p := range md.Topics[0].Partitions {
		ps = append(ps, p.ID)
	}
	return ps, nil
}

// readTopic calls fn for every record of topic from the start up to the end offsets it
// had when called, partition by partition. A missing topic reads as empty.
func (k *kafkaConn) readTopic(ctx context.Context, topic string, fn func(key, value []byte, tombstone bool) error) error {
	ps, err := k.partitions(ctx, topic)
	if err != nil || len(ps) == 0 {
		return err
	}
	req := map[string][]kafka.OffsetRequest{}
	for _, p := range ps {
		req[topic] = append(req[topic], kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	offs, err := k.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		return fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return fmt.Errorf("listing offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		for off := po.FirstOffset; off < po.LastOffset; {
			resp, err := k.client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: po.Partition, Offset: off,
				MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 500 * time.Millisecond})
			if err != nil {
				return fmt.Errorf("reading %s/%d: %w", topic, po.Partition, err)
			}
			if resp.Error != nil {
				return fmt.Errorf("reading %s/%d: %w", topic, po.Partition, resp.Error)
			}
			next := off
			for {
				r, err := resp.Records.ReadRecord()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return fmt.Errorf("reading %s/%d: %w", topic, po.Partition, err)
				}
				if r.Offset < off {
					continue
				}
				next = r.Offset + 1
				if r.Offset >= po.LastOffset {
					break
				}
				key, _ := readBytes(r.Key)
				val, null := readBytes(r.Value)
				if err := fn(key, val, null); err != nil {
					return err
				}
			}
			if next == off {
				// Compaction may leave gaps; an empty fetch below the end means the rest
				// was compacted away or is a control batch.
				if resp.HighWatermark <= off {
					break
				}
				next = off + 1
			}
			off = next
		}
	}
	return nil
}

func readBytes(b protocol.Bytes) ([]byte, bool) {
	if b == nil {
		return nil, true
	}
	out, err := protocol.ReadAll(b)
	if err != nil {
		return nil, true
	}
	return out, false
}

func compression(name string) kafka.Compression {
	switch name {
	case "snappy":
		return kafka.Snappy
	case "zstd":
		return kafka.Zstd
	case "gzip":
		return kafka.Gzip
	case "none":
		return 0
	}
	return kafka.Lz4
}

// newWriter returns the synchronous writer every record goes through. Tuned for bulk:
// a short BatchTimeout (the 1 s default would be paid by every WriteMessages call), large
// batches, compression, and acks from all in-sync replicas so that an acknowledged write
// survives a broker failure. Its own retries are few: the runner retries a failed chunk
// until the broker is back, without advancing the checkpoint.
func (k *kafkaConn) newWriter() *kafka.Writer {
	return &kafka.Writer{
		Addr:                   k.addr,
		Transport:              k.transport,
		Balancer:               &kafka.Murmur2Balancer{}, // the Java clients' partitioner
		MaxAttempts:            3,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        500 * time.Millisecond,
		BatchSize:              5000,
		BatchBytes:             1 << 20,
		BatchTimeout:           5 * time.Millisecond,
		ReadTimeout:            30 * time.Second,
		WriteTimeout:           30 * time.Second,
		RequiredAcks:           kafka.RequireAll,
		Compression:            compression(k.cfg.Compression),
		AllowAutoTopicCreation: false,
	}
}

// newAsyncWriter returns the writer of a pass's chunks: WriteMessages only queues records
// (in call order, per partition), so several chunks are in flight while the next is
// mapped, and done hears of every produced batch, success or failure. Settings as
// newWriter.
func (k *kafkaConn) newAsyncWriter(done func([]kafka.Message, error)) *kafka.Writer {
	w := k.newWriter()
	w.Async = true
	w.Completion = done
	return w
}

// sleepCtx waits d, or returns ctx's error when it is done first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if !backoff.Sleep(ctx, d) {
		return ctx.Err()
	}
	return nil
}
