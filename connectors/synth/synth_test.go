package synth_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"govx/connectors/synth"
	"govx/schemas"
	"govx/schemas/ident"
)

func newGen(t testing.TB, scale int, seed uint64, rate float64) *synth.Generator {
	t.Helper()
	g, err := synth.New(synth.Options{Scale: scale, Seed: seed, InvalidRate: rate})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func catalog(t testing.TB) *schemas.Catalog {
	t.Helper()
	c, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// digest is an order-independent fingerprint of a table: the lane-wise sum of the
// SHA-256 of each row's canonical text, plus the row count.
type digest struct {
	rows  int
	lanes [4]uint64
}

func (d *digest) add(row []any) {
	h := sha256.Sum256([]byte(canonical(row)))
	for k := range d.lanes {
		d.lanes[k] += binary.LittleEndian.Uint64(h[8*k:])
	}
	d.rows++
}

func (d digest) String() string { return fmt.Sprintf("%d rows %016x", d.rows, d.lanes) }

// canonical renders a row in the generator's value form as unambiguous text.
func canonical(row []any) string {
	var b strings.Builder
	for _, v := range row {
		switch x := v.(type) {
		case nil:
			b.WriteString("\x00NULL")
		case time.Time:
			b.WriteString(x.UTC().Format(time.RFC3339Nano))
		case float64:
			fmt.Fprintf(&b, "%v", x)
		default:
			fmt.Fprintf(&b, "%T:%v", x, x)
		}
		b.WriteByte('\x1f')
	}
	return b.String()
}

func generatedDigest(g *synth.Generator, dept string) digest {
	var d digest
	for _, row := range g.Rows(dept) {
		d.add(row)
	}
	return d
}

func TestDeterminism(t *testing.T) {
	a := newGen(t, 2000, 42, synth.DefaultInvalidRate)
	b := newGen(t, 2000, 42, synth.DefaultInvalidRate)
	c := newGen(t, 2000, 43, synth.DefaultInvalidRate)
	for _, dept := range synth.Departments() {
		if a.Count(dept) == 0 {
			t.Fatalf("%s: no rows", dept)
		}
		differ := 0
		for i, row := range a.Rows(dept) {
			if got := canonical(b.Row(dept, i)); got != canonical(row) {
				t.Fatalf("%s row %d differs between two runs with seed 42:\n%s\n%s", dept, i, canonical(row), got)
			}
			if canonical(c.Row(dept, i)) != canonical(row) {
				differ++
			}
		}
		// Every row of a different seed should differ; indicators share their key
		// columns, so the value columns must make the difference.
		if differ < a.Count(dept)*99/100 {
			t.Errorf("%s: only %d of %d rows differ between seeds 42 and 43", dept, differ, a.Count(dept))
		}
		if generatedDigest(a, dept) != generatedDigest(b, dept) {
			t.Errorf("%s: digests of two same-seed runs differ", dept)
		}
	}
}

func TestScale(t *testing.T) {
	g := newGen(t, 2000, 1, 0)
	want := map[string]int{"gab": 2000, "scjgj": 200, "zrzyb": 400, "tjj": 12 * 20 * 51, "zwfw": 200 + 400 + 500}
	for dept, n := range want {
		if got := g.Count(dept); got != n {
			t.Errorf("%s: %d rows, want %d", dept, got, n)
		}
	}
	if _, err := synth.New(synth.Options{Scale: 5}); err == nil {
		t.Error("scale 5 accepted; it cannot give every register rows")
	}
	if _, err := synth.New(synth.Options{Scale: 100, Departments: []string{"gab", "nope"}}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown department: err = %v", err)
	}
}

// registers is every row of one generation in dataset form, by department.
type registers map[string][]map[string]any

func toDatasets(t testing.TB, g *synth.Generator) registers {
	t.Helper()
	out := registers{}
	for _, dept := range g.Departments() {
		for _, row := range g.Rows(dept) {
			rec, err := synth.ToDataset(dept, row)
			if err != nil {
				t.Fatal(err)
			}
			out[dept] = append(out[dept], rec)
		}
	}
	return out
}

// TestRowsValid: with no planted errors every row of every register passes its
// dataset's validation, keys are unique, and the registers agree with each other.
func TestRowsValid(t *testing.T) {
	g := newGen(t, 2000, 7, 0)
	cat := catalog(t)
	regs := toDatasets(t, g)
	for _, dept := range g.Departments() {
		ds, ok := cat.Dataset(synth.DatasetOf(dept))
		if !ok {
			t.Fatalf("no dataset %s", synth.DatasetOf(dept))
		}
		keys := map[string]bool{}
		for i, rec := range regs[dept] {
			if errs := ds.Validate(rec); len(errs) > 0 {
				t.Fatalf("%s row %d invalid: %v\n%v", dept, i, errs, rec)
			}
			k, err := ds.RecordKey(rec)
			if err != nil {
				t.Fatal(err)
			}
			if keys[k] {
				t.Fatalf("%s: duplicate key %s", dept, k)
			}
			keys[k] = true
		}
	}
	checkReferences(t, regs, nil)
	checkPersons(t, regs["gab"])
}

// checkReferences asserts every cross-register reference resolves: legal
// representatives are persons (with the same name), parcel holders exist, and
// indicators cover exactly the regions used (with their cities and provinces).
// Records listed in skip (planted invalid) are not required to resolve.
func checkReferences(t *testing.T, regs registers, skip map[string]map[int]bool) {
	t.Helper()
	persons := map[string]map[string]any{}
	used := map[string]bool{}
	for i, p := range regs["gab"] {
		if !skip["gab"][i] {
			persons[p["id_number"].(string)] = p
		}
		used[p["household_region"].(string)] = true
	}
	orgs := map[string]bool{}
	for i, o := range regs["scjgj"] {
		if skip["scjgj"][i] {
			continue
		}
		orgs[o["uscc"].(string)] = true
		used[o["region_code"].(string)] = true
		if !strings.HasPrefix(o["uscc"].(string)[2:8], o["region_code"].(string)) {
			t.Errorf("org %s is registered in %s, not in its USCC's region", o["uscc"], o["region_code"])
		}
		rep, ok := persons[o["legal_rep_id_number"].(string)]
		if !ok {
			t.Fatalf("org %s: legal representative %s is not in the population register", o["uscc"], o["legal_rep_id_number"])
		}
		if rep["name"] != o["legal_rep_name"] {
			t.Errorf("org %s: legal representative named %s, the register says %s", o["uscc"], o["legal_rep_name"], rep["name"])
		}
		if rep["status"] != "alive" {
			t.Errorf("org %s: legal representative %s is %s", o["uscc"], rep["id_number"], rep["status"])
		}
	}
	byOrg, byPerson := 0, 0
	for i, p := range regs["zrzyb"] {
		used[p["region_code"].(string)] = true
		if skip["zrzyb"][i] {
			continue
		}
		u, id := p["holder_uscc"], p["holder_id_number"]
		switch {
		case u != nil && id == nil:
			byOrg++
			if !orgs[u.(string)] {
				t.Fatalf("parcel %s: holder %s is not a registered organization", p["parcel_code"], u)
			}
		case id != nil && u == nil:
			byPerson++
			if persons[id.(string)] == nil {
				t.Fatalf("parcel %s: holder %s is not in the population register", p["parcel_code"], id)
			}
		default:
			t.Fatalf("parcel %s: holders %v and %v, want exactly one", p["parcel_code"], u, id)
		}
	}
	if byOrg == 0 || byPerson == 0 {
		t.Errorf("parcel holders: %d organizations, %d persons; want both kinds", byOrg, byPerson)
	}
	// Indicator regions are the used regions plus their cities and provinces.
	want := map[string]bool{}
	for code := range used {
		r, ok := ident.LookupRegion(code)
		if !ok {
			t.Fatalf("region %s is not in the shipped table", code)
		}
		want[code], want[r.CityCode], want[r.ProvinceCode] = true, true, true
	}
	got := map[string]bool{}
	for _, ind := range regs["tjj"] {
		got[ind["region_code"].(string)] = true
	}
	if !maps.Equal(got, want) {
		t.Errorf("indicator regions %v, want the used regions with their cities and provinces %v",
			slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	cities, provinces := map[string]bool{}, map[string]bool{}
	for code := range used {
		r, _ := ident.LookupRegion(code)
		cities[r.CityCode], provinces[r.ProvinceCode] = true, true
	}
	if len(cities) < 3 || len(provinces) < 2 {
		t.Errorf("registers use %d cities in %d provinces, want at least 3 in 2", len(cities), len(provinces))
	}
	for _, c := range ident.DemoCounties() {
		if !used[c.Code] {
			t.Errorf("demo county %s %s has no rows", c.Code, c.Name)
		}
	}
}

// checkPersons asserts what GB 11643 ties together inside one person.
func checkPersons(t *testing.T, persons []map[string]any) {
	t.Helper()
	surnames2 := 0
	for _, p := range persons {
		id := p["id_number"].(string)
		if id[:6] != p["household_region"] {
			t.Fatalf("person %s lives in %s, not the ID's region", id, p["household_region"])
		}
		if want := id[6:10] + "-" + id[10:12] + "-" + id[12:14]; p["birth_date"] != want {
			t.Fatalf("person %s born %s, the ID says %s", id, p["birth_date"], want)
		}
		if y := id[6:10]; y < "1930" || y > "2020" {
			t.Fatalf("person %s born in %s, want 1930–2020", id, y)
		}
		gender := "2"
		if (id[16]-'0')%2 == 1 {
			gender = "1"
		}
		if p["gender"] != gender {
			t.Fatalf("person %s has gender %s, the 17th digit's parity says %s", id, p["gender"], gender)
		}
		r, _ := ident.LookupRegion(id[:6])
		if addr, _ := p["address"].(string); !strings.HasPrefix(addr, r.ProvinceName+r.CityName+r.Name) || !strings.Contains(addr, "号") {
			t.Fatalf("person %s: address %q does not start with %s%s%s", id, addr, r.ProvinceName, r.CityName, r.Name)
		}
		name := []rune(p["name"].(string))
		if len(name) < 2 || len(name) > 4 {
			t.Fatalf("person %s: name %q", id, string(name))
		}
		if len(name) == 4 || len(name) == 3 && slices.Contains([]string{"欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "令狐", "慕容", "司徒", "尉迟", "公孙", "夏侯"}, string(name[:2])) {
			surnames2++
		}
	}
	if surnames2 == 0 {
		t.Error("no compound surnames (欧阳, 司马, …) among the persons")
	}
}

// TestPlantedInvalid: with the default rate, the rows the schemas reject are exactly
// the rows the generator reports as planted, and references still resolve.
func TestPlantedInvalid(t *testing.T) {
	g := newGen(t, 20000, 3, synth.DefaultInvalidRate)
	cat := catalog(t)
	regs := toDatasets(t, g)
	skip := map[string]map[int]bool{}
	total, planted := 0, 0
	for _, dept := range g.Departments() {
		ds, _ := cat.Dataset(synth.DatasetOf(dept))
		var failing []int
		for i, rec := range regs[dept] {
			if len(ds.Validate(rec)) > 0 {
				failing = append(failing, i)
			}
		}
		want := g.PlantedInvalid(dept)
		if !slices.Equal(failing, want) {
			t.Errorf("%s: rows failing validation %v, planted %v", dept, head(failing), head(want))
		}
		skip[dept] = map[int]bool{}
		for _, i := range want {
			skip[dept][i] = true
			if !g.IsPlantedInvalid(dept, i) {
				t.Errorf("%s row %d: listed as planted but IsPlantedInvalid is false", dept, i)
			}
		}
		if len(want) == 0 {
			t.Errorf("%s: no planted invalid rows in %d", dept, len(regs[dept]))
		}
		total += len(regs[dept])
		planted += len(want)
	}
	if rate := float64(planted) / float64(total); math.Abs(rate-synth.DefaultInvalidRate) > 0.002 {
		t.Errorf("planted %d of %d rows (%.3f%%), want about %.1f%%", planted, total, 100*rate, 100*synth.DefaultInvalidRate)
	}
	checkReferences(t, regs, skip)
	checkLicences(t, regs, skip)
}

func head(xs []int) []int { return xs[:min(len(xs), 20)] }

// TestRerunReplaces: generating into an existing SQLite target replaces the tables.
func TestRerunReplaces(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for _, seed := range []uint64{1, 2} {
		g := newGen(t, 500, seed, synth.DefaultInvalidRate)
		w, err := synth.Open(ctx, "sqlite:"+dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := synth.Generate(ctx, g, w, nil); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	g := newGen(t, 500, 2, synth.DefaultInvalidRate)
	for _, dept := range g.Departments() {
		got := readSQLite(t, filepath.Join(dir, dept+".db"), synth.TableOf(dept))
		if want := generatedDigest(g, dept); got.digest != want {
			t.Errorf("%s after re-run: %v, want seed 2's %v", dept, got.digest, want)
		}
	}
}

func TestRedactsPasswords(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, target := range []string{
		"postgres://govx:s3cr3t-pw@127.0.0.1:1/govx?sslmode=disable",
		"mysql://govx:s3cr3t-pw@127.0.0.1:1/",
		"mysql://govx:s3cr3t-pw@127.0.0.1:1/?colour=blue",
		"postgres://govx:s3cr3t-pw@127.0.0.1:1/govx?sslmode=bogus",
	} {
		_, err := synth.Open(ctx, target)
		if err == nil {
			t.Fatalf("%s: opened a closed port", synth.Redact(target))
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error shows the password: %v", err)
		}
		if r := synth.Redact(target); strings.Contains(r, "s3cr3t") || !strings.Contains(r, "127.0.0.1") {
			t.Errorf("Redact(%q) = %q", target, r)
		}
	}
	if _, err := synth.Open(ctx, "oracle://a:b@c/"); err == nil || strings.Contains(err.Error(), ":b@") {
		t.Errorf("unknown target: err = %v", err)
	}
}
