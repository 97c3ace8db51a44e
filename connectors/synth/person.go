package synth

import (
	"math/rand/v2"
	"strconv"
	"time"

	"govx/schemas/ident"
)

// countyInfo is a demo county with what rows need from it, computed once.
type countyInfo struct {
	ident.Region
	prefix   string  // 浙江省杭州市西湖区: the start of every address there
	lon, lat float64 // a point inside the county
}

func countyInfos(counties []ident.Region) []countyInfo {
	out := make([]countyInfo, len(counties))
	perCity := map[string]int{}
	for i, c := range counties {
		center, ok := cityCenters[c.CityCode]
		if !ok {
			// A county of a city without a listed centre still lies in China: place
			// it at the centre of the Yangtze delta rather than fail.
			center = [2]float64{120.0, 31.0}
		}
		k := perCity[c.CityCode]
		perCity[c.CityCode]++
		out[i] = countyInfo{
			Region: c,
			prefix: c.ProvinceName + c.CityName + c.Name,
			lon:    center[0] + 0.06*float64(k%3-1),
			lat:    center[1] + 0.05*float64(k/3%3-1),
		}
	}
	return out
}

// person is what other registers need to know about a person: enough to reference
// them, computed from the index alone.
type person struct {
	id     string
	name   string
	male   bool
	birth  time.Time
	county int
	status byte // '1' 正常, '2' 死亡, '3' 迁出
}

// personCore draws a person's identity from r, which must be the person's own stream
// (rowRand.at(seed, kindPerson, i)), so that references and the register agree.
func (g *Generator) personCore(r *rand.Rand, i int) person {
	slot := g.personSlot(i)
	perCounty := uint64(birthDays) * 1000
	county := int(slot / perCounty)
	day := int(slot / 1000 % uint64(birthDays))
	seq := int(slot % 1000)
	birth := birthFirst.AddDate(0, 0, day)
	var b [18]byte
	body := b[:0]
	body = append(body, g.cinfo[county].Code...)
	body = birth.AppendFormat(body, "20060102")
	body = append(body, byte('0'+seq/100), byte('0'+seq/10%10), byte('0'+seq%10))
	check, _ := ident.CitizenIDCheckChar(string(body))
	body = append(body, check)
	// GB 11643: the sequence's last digit (the 17th character) is odd for men, even
	// for women.
	male := seq%2 == 1
	p := person{id: string(body), male: male, birth: birth, county: county, status: '1'}
	p.name = personName(r, male)
	switch x := r.IntN(1000); {
	case birth.Year() < 1950 && x < 150, x < 15:
		p.status = '2'
	case x >= 970:
		p.status = '3'
	}
	return p
}

// personSlot maps person i to a unique slot of the citizen-ID space (county, birth
// date, sequence, in the order an ID sorts): the space is cut into Scale equal
// intervals and person i gets a seed-chosen slot inside interval i. Slots never
// collide, and IDs ascend with the index, as in an export ordered by primary key —
// which also lets every database append to its key index instead of scattering
// inserts over it (MariaDB's clustered index slows down fourfold otherwise at 1M rows).
func (g *Generator) personSlot(i int) uint64 {
	lo := uint64(i) * g.idSpace / uint64(g.nPersons)
	hi := uint64(i+1) * g.idSpace / uint64(g.nPersons)
	return lo + hash3(g.opts.Seed, kindPerson<<8, i)%(hi-lo)
}

// personAt regenerates person i on its own stream.
func (g *Generator) personAt(i int) person {
	var rr rowRand
	return g.personCore(rr.at(g.opts.Seed, kindPerson, i), i)
}

// refPerson picks the person another register's row refers to: a valid, living adult.
// It probes seed-determined random indexes (persons are ordered by ID, so neighbours
// share a county and birth date and a forward walk could cross thousands of children),
// so every reference is intact whatever rows are planted invalid.
func (g *Generator) refPerson(kind uint64, i int) person {
	h := hash3(g.opts.Seed, kind, i)
	n := uint64(g.nPersons)
	var fallback *person
	for k := uint64(0); k < 64; k++ {
		j := int(mix(h+k*0x9e3779b97f4a7c15) % n)
		if g.plantedVariant(DeptPopulation, j) != 0 {
			continue
		}
		p := g.personAt(j)
		if p.status == '1' && p.birth.Year() <= 2005 {
			return p
		}
		if fallback == nil {
			fallback = &p
		}
	}
	// Only tiny populations get here: take any valid person, scanning in order.
	if fallback != nil {
		return *fallback
	}
	for j := 0; j < g.nPersons; j++ {
		if g.plantedVariant(DeptPopulation, j) == 0 {
			return g.personAt(j)
		}
	}
	return g.personAt(int(h % n))
}

// refEpoch is the moment the synthetic registers were "last updated": update times
// fall in the 2½ years before it. A fixed instant keeps rows reproducible.
var (
	refEpoch   = time.Date(2025, 6, 30, 18, 0, 0, 0, time.UTC)
	updateSpan = int64(refEpoch.Sub(time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)) / time.Second)
)

func updatedAt(r *rand.Rand) time.Time {
	return refEpoch.Add(-time.Duration(r.Int64N(updateSpan)) * time.Second)
}

func (g *Generator) personRow(rr *rowRand, i int) []any {
	r := rr.at(g.opts.Seed, kindPerson, i)
	p := g.personCore(r, i)
	c := g.cinfo[p.county]
	xb := "女"
	if p.male {
		xb = "男"
	}
	var mz any
	switch x := r.IntN(100); {
	case x < 2:
		mz = nil
	case x < 93:
		mz = "01"
	default:
		mz = twoDigits(2 + r.IntN(55))
	}
	var lxdh any
	if r.IntN(10) != 0 {
		lxdh = phone(r, c)
	}
	row := []any{
		p.id, p.name, xb, p.birth.Format("20060102"), mz, c.Code, address(r, c), lxdh,
		string(p.status), updatedAt(r),
	}
	switch g.plantedVariant(DeptPopulation, i) {
	case 1:
		row[0] = wrongCheckChar(p.id, citizenAlphabet)
	case 2:
		// Month 13 of the birth year: no calendar has it.
		row[3] = p.birth.Format("2006") + "13" + p.birth.Format("02")
	}
	return row
}

func twoDigits(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}
