package synth

import (
	"fmt"
	"strings"
	"time"
)

// DatasetOf returns the govx dataset a department's table feeds.
func DatasetOf(dept string) string {
	switch dept {
	case DeptPopulation:
		return "population.person"
	case DeptMarket:
		return "legal_entity.organization"
	case DeptLand:
		return "resource.land_parcel"
	case DeptStatistics:
		return "economy.indicator"
	case DeptLicence:
		return "license.certificate"
	}
	return ""
}

// ToDataset maps one native row of dept (in the generator's value form, see ColType) to
// its dataset record in canonical form: field names of schemas/*.yaml, codes translated
// (男 → "1", 存续 → "active", …), dates "YYYY-MM-DD", timestamps RFC 3339, decimals as
// strings. It translates, it does not validate: a planted invalid value comes out
// invalid, for schemas' Validate to reject. Connectors map through their own config;
// this is the reference the tests and the demo use.
func ToDataset(dept string, row []any) (map[string]any, error) {
	t := TableOf(dept)
	if t == nil {
		return nil, fmt.Errorf("unknown department %q", dept)
	}
	if len(row) != len(t.Columns) {
		return nil, fmt.Errorf("%s.%s row has %d values, the table has %d columns", dept, t.Name, len(row), len(t.Columns))
	}
	for k, c := range t.Columns {
		if err := checkValue(c, row[k]); err != nil {
			return nil, fmt.Errorf("%s.%s.%s: %w", dept, t.Name, c.Name, err)
		}
	}
	switch dept {
	case DeptPopulation:
		return map[string]any{
			"id_number":        row[0],
			"name":             row[1],
			"gender":           lookup(row[2], map[string]string{"男": "1", "女": "2"}, "9"),
			"birth_date":       compactDate(row[3]),
			"ethnicity":        row[4],
			"household_region": row[5],
			"address":          row[6],
			"phone":            row[7],
			"status":           lookup(row[8], map[string]string{"1": "alive", "2": "deceased", "3": "migrated"}, ""),
			"updated_at":       timestamp(row[9]),
		}, nil
	case DeptMarket:
		return map[string]any{
			"uscc":                row[0],
			"name":                row[1],
			"org_type":            lookup(row[2], map[string]string{"企业": "enterprise", "事业单位": "public_institution", "社会组织": "social_organization", "机关": "government"}, ""),
			"legal_rep_id_number": row[3],
			"legal_rep_name":      row[4],
			"registered_capital":  row[5],
			"established_on":      date(row[6]),
			"status":              lookup(row[7], map[string]string{"存续": "active", "吊销": "revoked", "注销": "cancelled"}, ""),
			"region_code":         row[8],
			"address":             row[9],
			"industry_code":       row[10],
			"updated_at":          timestamp(row[11]),
		}, nil
	case DeptLand:
		rightType := "use_right"
		if s, _ := row[4].(string); strings.HasSuffix(s, "所有权") {
			rightType = "ownership"
		}
		var registered any
		if s, ok := row[9].(string); ok {
			registered = strings.ReplaceAll(s, "/", "-")
		}
		return map[string]any{
			"parcel_code":      row[0],
			"region_code":      row[1],
			"land_use":         row[2],
			"area_m2":          row[3],
			"right_type":       rightType,
			"holder_uscc":      row[5],
			"holder_id_number": row[6],
			"longitude":        row[7],
			"latitude":         row[8],
			"registered_on":    registered,
			"updated_at":       timestamp(row[10]),
		}, nil
	case DeptLicence:
		return map[string]any{
			"licence_no":       row[0],
			"licence_type":     lookup(row[1], licenceTypeCodes, ""),
			"holder_uscc":      row[2],
			"holder_id_number": row[3],
			"holder_name":      row[4],
			"issuer":           row[5],
			"issuer_region":    row[7],
			"issued_on":        date(row[8]),
			"valid_until":      date(row[9]),
			"status":           lookup(row[10], map[string]string{"有效": "valid", "暂扣": "suspended", "吊销": "revoked", "注销": "revoked", "过期": "expired"}, ""),
			"content_digest":   row[11],
			"issuer_signature": row[12],
			"updated_at":       timestamp(row[13]),
		}, nil
	default: // DeptStatistics
		return map[string]any{
			"indicator_code": row[0],
			"region_code":    row[1],
			"period":         row[2],
			"value":          row[3],
			"unit":           row[4],
			"published_on":   date(row[5]),
			"updated_at":     timestamp(row[6]),
		}, nil
	}
}

// checkValue reports whether v has the Go type the column's ColType promises.
func checkValue(c Column, v any) error {
	if v == nil {
		return nil
	}
	ok := false
	switch c.Type {
	case Text, Numeric:
		_, ok = v.(string)
	case Date, Timestamp:
		_, ok = v.(time.Time)
	case Float:
		_, ok = v.(float64)
	}
	if !ok {
		return fmt.Errorf("value %v has Go type %T, not the column's", v, v)
	}
	return nil
}

func lookup(v any, m map[string]string, unknown string) any {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	if out, ok := m[s]; ok {
		return out
	}
	if unknown != "" {
		return unknown
	}
	return s // an unknown code passes through for validation to reject
}

func compactDate(v any) any {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	if len(s) == 8 {
		return s[:4] + "-" + s[4:6] + "-" + s[6:]
	}
	return s
}

func date(v any) any {
	if t, ok := v.(time.Time); ok {
		return t.Format(time.DateOnly)
	}
	return nil
}

func timestamp(v any) any {
	if t, ok := v.(time.Time); ok {
		return t.UTC().Format(time.RFC3339)
	}
	return nil
}

// licenceTypeCodes maps the e-licence register's type names to license.certificate codes.
var licenceTypeCodes = func() map[string]string {
	m := make(map[string]string, len(licenceTypes))
	for _, t := range licenceTypes {
		m[t.zzlx] = t.code
	}
	return m
}()
