package schemas

import (
	"encoding/json"
	"fmt"
)

// RecordKey returns a record's Kafka key: the primary key as text, or for a composite
// key a JSON array of its values in key-field order (["GDP","330100","2024Q3"]).
func (d *Dataset) RecordKey(rec map[string]any) (string, error) {
	vals := make([]any, len(d.Key))
	for i, k := range d.Key {
		vals[i] = rec[k]
	}
	return d.KeyOf(vals)
}

// KeyOf returns the Kafka key of a record whose key fields have the values vals, in
// key-field order: RecordKey for a decoder that holds the values, not a map.
func (d *Dataset) KeyOf(vals []any) (string, error) {
	for i, v := range vals {
		if v == nil {
			return "", fmt.Errorf("%s: key field %s is missing", d.ID, d.Key[i])
		}
	}
	if len(vals) == 1 {
		return CanonicalText(vals[0]), nil
	}
	b, err := json.Marshal(vals)
	return string(b), err
}

// ParseKey splits a key produced by RecordKey into its field values (as strings).
func (d *Dataset) ParseKey(key string) ([]string, error) {
	if len(d.Key) == 1 {
		return []string{key}, nil
	}
	var vals []any
	if err := json.Unmarshal([]byte(key), &vals); err != nil || len(vals) != len(d.Key) {
		return nil, fmt.Errorf("%s: key must be a JSON array of %d values (%v)", d.ID, len(d.Key), d.Key)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = CanonicalText(v)
	}
	return out, nil
}
