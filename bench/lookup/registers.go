package main

// The other three registers of a person subject view (一号式), for -subject: one
// organization per 10 persons (legal representative: person 10j), one parcel per 5
// (holder: person 5j) and one licence per 4 (holder: person 4j), the ratios of
// `govx gen`. Every 20th person is therefore a legal representative holding a parcel
// and a licence; the measured subjects are such persons. Records are pure functions of
// their index, so the baseline's four lookups know each linked key.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/segmentio/kafka-go"

	"govx/bench/ingest/feed"
	"govx/connectors/synth"
	"govx/schemas/ident"
	"govx/schemas/license"
)

const (
	orgDataset     = "legal_entity.organization"
	parcelDataset  = "resource.land_parcel"
	licenceDataset = "license.certificate"
	orgsPer        = 10 // persons per organization
	parcelsPer     = 5
	licencesPer    = 4
	subjectStride  = 20 // lcm: persons 20k are linked in all three
)

// subjectAgreements grant the bench subject lookups of the three registers, the
// linking columns unmasked (a subject view follows a link only through such a column),
// nationwide, with key budgets a benchmark does not exhaust.
const subjectAgreements = `
  - id: AGR-BENCH-0002
    title: 基准测试 — 法人单位（一号式）
    consumer: rs-33
    system: bench
    dataset: legal_entity.organization
    purposes: [benchmark-measurement]
    columns: [uscc, name, org_type, legal_rep_id_number, legal_rep_name, status, region_code]
    unmasked: [legal_rep_id_number, legal_rep_name]
    region: "000000"
    actions: [lookup]
    valid_from: 2026-01-01
    valid_until: 2030-12-31
    approval: 基准〔2026〕2号
    key_budget: {verify_per_key: 1000000, lookup_per_key: 1000000, distinct_keys: 100000000}
  - id: AGR-BENCH-0003
    title: 基准测试 — 宗地（一号式）
    consumer: rs-33
    system: bench
    dataset: resource.land_parcel
    purposes: [benchmark-measurement]
    columns: [parcel_code, region_code, land_use, area_m2, right_type, holder_id_number, registered_on]
    unmasked: [holder_id_number]
    region: "000000"
    actions: [lookup]
    valid_from: 2026-01-01
    valid_until: 2030-12-31
    approval: 基准〔2026〕3号
    key_budget: {verify_per_key: 1000000, lookup_per_key: 1000000, distinct_keys: 100000000}
  - id: AGR-BENCH-0004
    title: 基准测试 — 电子证照（一号式、核验）
    consumer: rs-33
    system: bench
    dataset: license.certificate
    purposes: [benchmark-measurement]
    columns: [licence_no, licence_type, holder_uscc, holder_id_number, holder_name, issuer, issued_on, valid_until, status, content_digest]
    unmasked: [holder_id_number, holder_name]
    region: "000000"
    actions: [lookup, verify]
    valid_from: 2026-01-01
    valid_until: 2030-12-31
    approval: 基准〔2026〕4号
    key_budget: {verify_per_key: 1000000, lookup_per_key: 1000000, distinct_keys: 100000000}
`

// appendAgreements adds the subject view agreements to the policy directory.
func appendAgreements(policiesDir string) error {
	f, err := os.OpenFile(filepath.Join(policiesDir, "agreements.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(subjectAgreements); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func county(i int) string { return feed.MakePerson(i).HouseholdRegion }

func usccOf(j int) string {
	body := "91" + county(j*orgsPer) + fmt.Sprintf("%09d", j)
	cc, _ := ident.USCCCheckChar(body)
	return body + string(cc)
}

func parcelCodeOf(j int) string {
	return county(j*parcelsPer) + fmt.Sprintf("%06dGB%05d", 1+j/99999, 1+j%99999)
}

func licenceNoOf(j int) string { return fmt.Sprintf("JSZ%012d", j) }

const updated = "2026-09-30T08:00:00Z"

func orgRecord(j int) (string, map[string]any) {
	p := feed.MakePerson(j * orgsPer)
	return usccOf(j), map[string]any{"uscc": usccOf(j), "name": fmt.Sprintf("基准测试第%d有限公司", j), "org_type": "enterprise",
		"legal_rep_id_number": p.IDNumber, "legal_rep_name": p.Name, "registered_capital": "100.0000",
		"established_on": "2010-05-01", "status": "active", "region_code": p.HouseholdRegion, "address": p.Address,
		"updated_at": updated}
}

func parcelRecord(j int) (string, map[string]any) {
	p := feed.MakePerson(j * parcelsPer)
	return parcelCodeOf(j), map[string]any{"parcel_code": parcelCodeOf(j), "region_code": p.HouseholdRegion, "land_use": "0701",
		"area_m2": "120.50", "right_type": "use_right", "holder_id_number": p.IDNumber, "longitude": 120.15, "latitude": 30.28,
		"registered_on": "2015-03-02", "updated_at": updated}
}

// issuerKey signs the licences of the measured subjects: ga-3301's demo key for seed 1,
// whose public key policies/issuers.yaml ships, so a verification checks a signature
// that holds.
var issuerKey = synth.IssuerKey(1, "ga-3301")

func digestOf(j int) string { return fmt.Sprintf("%064x", j) }

func licenceRecord(j int) (string, map[string]any) {
	p := feed.MakePerson(j * licencesPer)
	l := license.Licence{No: licenceNoOf(j), Type: "driving_licence", HolderIDNumber: p.IDNumber, HolderName: p.Name,
		Issuer: "ga-3301", IssuerRegion: "330100", IssuedOn: "2016-01-04", ContentDigest: digestOf(j)}
	sig := fmt.Sprintf("%0128x", j)
	if j*licencesPer%subjectStride == 0 { // a measured subject's: signed (the others are never verified)
		var err error
		if sig, err = license.Sign(issuerKey, l); err != nil {
			panic(err)
		}
	}
	return l.No, map[string]any{"licence_no": l.No, "licence_type": l.Type, "holder_id_number": l.HolderIDNumber,
		"holder_name": l.HolderName, "issuer": l.Issuer, "issuer_region": l.IssuerRegion, "issued_on": l.IssuedOn,
		"status": "valid", "content_digest": l.ContentDigest, "issuer_signature": sig, "updated_at": updated}
}

// produceRegisters writes the three registers for rows persons under prefix.
func produceRegisters(ctx context.Context, broker, prefix string, rows int) error {
	for _, r := range []struct {
		dataset, source string
		n               int
		rec             func(int) (string, map[string]any)
	}{
		{orgDataset, "scjgj", rows / orgsPer, orgRecord},
		{parcelDataset, "zrzyb", rows / parcelsPer, parcelRecord},
		{licenceDataset, "zwfw", rows / licencesPer, licenceRecord},
	} {
		if err := produce(ctx, broker, prefix+r.dataset, r.dataset, r.source, r.n, r.rec); err != nil {
			return err
		}
	}
	return nil
}

// produce writes records 0..n-1 to a new compacted topic as a connector does.
func produce(ctx context.Context, broker, topic, dataset, source string, n int, rec func(int) (string, map[string]any)) error {
	client := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 30 * time.Second}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: 6, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}},
	}}})
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: topic, Balancer: &kafka.Hash{},
		BatchSize: 5000, BatchBytes: 8 << 20, BatchTimeout: 20 * time.Millisecond,
		Compression: kafka.Lz4, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	headers := []kafka.Header{{Key: "govx-op", Value: []byte("upsert")}, {Key: "govx-dataset", Value: []byte(dataset)},
		{Key: "govx-schema-version", Value: []byte("1")}, {Key: "govx-source", Value: []byte(source)}}
	const chunk = 30000
	msgs := make([]kafka.Message, 0, chunk)
	for i := 0; i < n; {
		msgs = msgs[:0]
		for ; len(msgs) < chunk && i < n; i++ {
			k, v := rec(i)
			b, _ := json.Marshal(v)
			msgs = append(msgs, kafka.Message{Key: []byte(k), Value: b, Headers: headers})
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := w.WriteMessages(ctx, msgs...)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("produce to %s: %w", topic, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}
