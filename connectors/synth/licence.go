package synth

import (
	"fmt"
	"math/rand/v2"
	"time"

	"govx/schemas/ident"
	"govx/schemas/license"
)

// licenceType is a licence the register holds: its license.certificate code, the type
// name the register's own table stores (zzlx), the prefix of its numbers, the authority
// issuing it and its possible terms in years (0: no term, 长期).
type licenceType struct {
	code   string
	zzlx   string
	prefix string
	issuer issuerKind
	terms  []int
}

var (
	ltBusiness     = licenceType{"business_licence", "营业执照", "YYZZ", issuerMarket, []int{0, 0, 0, 20, 30}}
	ltInstitution  = licenceType{"public_institution_certificate", "事业单位法人证书", "SYDW", issuerStaffing, []int{5}}
	ltSocial       = licenceType{"social_organization_certificate", "社会组织法人登记证书", "SHZZ", issuerCivil, []int{5}}
	ltUSCC         = licenceType{"uscc_certificate", "统一社会信用代码证书", "TYDM", issuerStaffing, []int{0}}
	ltFood         = licenceType{"food_business_permit", "食品经营许可证", "JY", issuerMarket, []int{5}}
	ltConstruction = licenceType{"construction_permit", "建筑工程施工许可证", "SGXK", issuerHousing, []int{0}}
	ltPollutant    = licenceType{"pollutant_discharge_permit", "排污许可证", "PWXK", issuerEcology, []int{5}}
	ltMedical      = licenceType{"medical_institution_licence", "医疗机构执业许可证", "YLJG", issuerHealth, []int{5, 15}}
	ltRealEstate   = licenceType{"real_estate_certificate", "不动产权证书", "BDCQ", issuerLand, []int{0}}
	ltMarriage     = licenceType{"marriage_certificate", "结婚证", "JHZ", issuerCivil, []int{0}}
	ltDriving      = licenceType{"driving_licence", "机动车驾驶证", "JSZ", issuerTraffic, []int{6, 10}}
	ltTeacher      = licenceType{"teacher_qualification_certificate", "教师资格证书", "JSZG", issuerEducation, []int{0}}
	ltPhysician    = licenceType{"physician_practising_certificate", "医师执业证书", "YSZY", issuerHealth, []int{0}}

	// licenceTypes are every type the register holds; ToDataset maps their native names
	// to license.certificate codes, as a connector's value map does.
	licenceTypes = []licenceType{ltBusiness, ltInstitution, ltSocial, ltUSCC, ltFood, ltConstruction,
		ltPollutant, ltMedical, ltRealEstate, ltMarriage, ltDriving, ltTeacher, ltPhysician}

	// Permits drawn for organizations beyond their registration, with weights.
	orgPermits    = []licenceType{ltFood, ltConstruction, ltPollutant, ltMedical}
	orgPermitsCum = []int{45, 70, 85, 100}
)

// The register's native statuses (zzzt) and what they mean in license.certificate.
const (
	zzztValid     = "有效" // valid
	zzztSuspended = "暂扣" // suspended
	zzztRevoked   = "吊销" // revoked
	zzztCancelled = "注销" // revoked: withdrawn when the holder or the right ceased
	zzztExpired   = "过期" // expired
)

// refDay is the last day the synthetic registers cover: nothing is issued after it, and
// a term that ended before it has expired.
var refDay = time.Date(refEpoch.Year(), refEpoch.Month(), refEpoch.Day(), 0, 0, 0, 0, time.UTC)

// issuance is what a licence row says before it is numbered, digested and signed.
type issuance struct {
	typ        licenceType
	holderUSCC any // string, or nil
	holderID   any // string, or nil
	holderName string
	region     ident.Region // whose city's authority issues it
	issuedOn   time.Time
	validUntil any // time.Time, or nil for no term
	zzzt       string
}

// The e-licence register's rows fall in three ranges of the row index, so that every
// row is a function of its index alone (see Count):
//
//	[0, orgs)                   the registration certificate of organization i (营业执照 for
//	                            enterprises, 事业单位法人证书, 社会组织法人登记证书, 统一社会信用代码证书),
//	                            revoked when the organization was; a planted-invalid
//	                            organization's row is an extra permit of a valid one instead
//	[orgs, orgs+parcels)        the real-estate certificate of parcel i-orgs, issued to its
//	                            holder on its registration date
//	[orgs+parcels, +persons/4)  a personal licence (driving, marriage, teacher, physician) of
//	                            a distinct person; for a child or a planted-invalid person, an
//	                            extra permit (food, construction, pollutant, medical) of an
//	                            organization instead
func (g *Generator) licenceRow(rr *rowRand, i int) []any {
	var is issuance
	switch {
	case i < g.nOrgs && g.plantedVariant(DeptMarket, i) == 0:
		is = g.registrationLicence(rr, i)
	case i < g.nOrgs:
		is = g.orgPermit(rr, i)
	case i < g.nOrgs+g.nParcels:
		is = g.realEstateLicence(rr, i, i-g.nOrgs)
	default:
		is = g.personalLicence(rr, i, i-g.nOrgs-g.nParcels)
	}
	r := rr.at(g.opts.Seed, kindLicence<<8, i) // the row's own stream for what is left
	if vu, ok := is.validUntil.(time.Time); ok && vu.Before(refDay) && is.zzzt == zzztValid {
		is.zzzt = zzztExpired
	}
	city := is.region.CityCode
	code := issuerCode(is.typ.issuer, city)
	no := is.typ.prefix + city + is.issuedOn.Format("2006") + pad(i+1, 8)
	l := license.Licence{
		No: no, Type: is.typ.code, HolderName: is.holderName,
		Issuer: code, IssuerRegion: city, IssuedOn: is.issuedOn.Format(time.DateOnly),
	}
	holder, _ := is.holderUSCC.(string)
	l.HolderUSCC = holder
	if id, ok := is.holderID.(string); ok {
		l.HolderIDNumber, holder = id, id
	}
	term := "长期"
	if vu, ok := is.validUntil.(time.Time); ok {
		l.ValidUntil = vu.Format(time.DateOnly)
		term = l.ValidUntil
	}
	issuerName := is.region.CityName + is.typ.issuer.suffix
	// The licence's content is what the holder is given; a real register digests the
	// issued document (OFD or PDF), the synthetic one the licence's face as text.
	l.ContentDigest = license.ContentDigest([]byte(fmt.Sprintf("%s\n证照编号：%s\n持证主体：%s\n证件号码：%s\n发证机关：%s\n发证日期：%s\n有效期至：%s\n",
		is.typ.zzlx, no, is.holderName, holder, issuerName, l.IssuedOn, term)))
	sig, err := license.Sign(g.issuerKeys[code], l)
	if err != nil {
		// Every value above is generated well-formed; failing here is a bug.
		panic(fmt.Sprintf("synth: sign licence %s as %s: %v", no, code, err))
	}
	gxsj := updatedAt(r)
	if gxsj.Before(is.issuedOn) {
		gxsj = is.issuedOn.Add(time.Duration(9*3600+r.IntN(8*3600)) * time.Second)
	}
	row := []any{
		no, is.typ.zzlx, is.holderUSCC, is.holderID, is.holderName, code, issuerName, city,
		is.issuedOn, is.validUntil, is.zzzt, l.ContentDigest, sig, gxsj,
	}
	switch g.plantedVariant(DeptLicence, i) {
	case 1:
		// The holder's identifier was mistyped: a wrong check character.
		if id, ok := is.holderID.(string); ok {
			row[3] = wrongCheckChar(id, citizenAlphabet)
		} else {
			row[2] = wrongCheckChar(holder, usccAlphabet)
		}
	case 2:
		// The export cut the digest short by one character.
		row[11] = l.ContentDigest[:63]
	}
	return row
}

// registrationLicence is the registration certificate of organization i, issued by
// its city's authority when it was established (or re-issued since).
func (g *Generator) registrationLicence(rr *rowRand, i int) issuance {
	o := g.orgFacts(i)
	r := rr.at(g.opts.Seed, kindLicence, i)
	is := issuance{holderUSCC: o.uscc, holderName: o.name, region: o.region, zzzt: zzztValid}
	switch o.ztlx {
	case "事业单位":
		is.typ = ltInstitution
	case "社会组织":
		is.typ = ltSocial
	case "机关":
		is.typ = ltUSCC
	default:
		is.typ = ltBusiness
	}
	term := pick(r, is.typ.terms)
	switch {
	case is.typ.code == ltBusiness.code:
		// A business licence's term runs from establishment; many were re-issued since
		// (a change of address or capital), keeping the term.
		is.issuedOn = o.established
		if r.IntN(10) < 4 {
			is.issuedOn = randomDay(r, o.established, refDay)
		}
		if term > 0 {
			is.validUntil = o.established.AddDate(term, 0, -1)
			if is.validUntil.(time.Time).Before(is.issuedOn) {
				is.validUntil = is.issuedOn.AddDate(term, 0, -1)
			}
		}
	case term > 0:
		is.issuedOn = renewed(r, o.established, term)
		is.validUntil = is.issuedOn.AddDate(term, 0, -1)
	default:
		is.issuedOn = o.established
	}
	switch o.djzt {
	case "吊销":
		is.zzzt = zzztRevoked
	case "注销":
		is.zzzt = zzztCancelled
	}
	return is
}

// orgPermit is a permit of an organization drawn for row i: a food business,
// construction, pollutant discharge or medical institution permit.
func (g *Generator) orgPermit(rr *rowRand, i int) issuance {
	o := g.orgFacts(g.refOrgIndex(kindPermit, i))
	r := rr.at(g.opts.Seed, kindLicence, i)
	is := issuance{typ: orgPermits[weighted(r, orgPermitsCum)], holderUSCC: o.uscc, holderName: o.name, region: o.region, zzzt: zzztValid}
	is.issuedOn = randomDay(r, later(o.established, time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)), refDay)
	if term := pick(r, is.typ.terms); term > 0 {
		is.issuedOn = renewed(r, is.issuedOn, term)
		is.validUntil = is.issuedOn.AddDate(term, 0, -1)
	}
	switch x := r.IntN(100); {
	case o.djzt != "存续":
		is.zzzt = zzztCancelled // permits end with their holder
	case x < 3:
		is.zzzt = zzztSuspended
	case x < 5:
		is.zzzt = zzztRevoked
	}
	return is
}

// realEstateLicence is the real-estate certificate of parcel j, issued to its holder
// on the date the parcel was registered.
func (g *Generator) realEstateLicence(rr *rowRand, i, j int) issuance {
	var ref rowRand
	parcel, djrq := g.parcelClean(&ref, j)
	region, _ := ident.LookupRegion(parcel[1].(string))
	is := issuance{typ: ltRealEstate, region: region, issuedOn: djrq, zzzt: zzztValid}
	if u, ok := parcel[5].(string); ok {
		is.holderUSCC = u
		is.holderName = g.orgFacts(g.refOrgIndex(kindHolder, j)).name
	} else {
		p := g.refPerson(kindHolder, j)
		is.holderID, is.holderName = p.id, p.name
	}
	if r := rr.at(g.opts.Seed, kindLicence, i); r.IntN(100) < 2 {
		is.zzzt = zzztCancelled // the right was transferred or cancelled since
	}
	return is
}

// personalLicence is the licence of the k-th person of a seed-keyed permutation, so no
// person holds two; a person too young for any (or planted invalid) gives the row to
// an organization's permit instead.
func (g *Generator) personalLicence(rr *rowRand, i, k int) issuance {
	pi := int(g.licencePersons.at(uint64(k)))
	if g.plantedVariant(DeptPopulation, pi) != 0 {
		return g.orgPermit(rr, i)
	}
	p := g.personAt(pi)
	adult := p.birth.AddDate(18, 0, 0)
	if adult.After(refDay) {
		return g.orgPermit(rr, i)
	}
	region := g.cinfo[p.county].Region
	r := rr.at(g.opts.Seed, kindLicence, i)
	is := issuance{holderID: p.id, holderName: p.name, region: region, zzzt: zzztValid}
	// Driving licences for most; the others need an age the youngest may not have.
	typ, from := ltDriving, later(adult, time.Date(1995, 1, 1, 0, 0, 0, 0, time.UTC))
	switch x := r.IntN(100); {
	case x < 30:
		typ, from = ltMarriage, p.birth.AddDate(22, 0, 0)
	case x < 38:
		typ, from = ltTeacher, p.birth.AddDate(22, 0, 0)
	case x < 45:
		typ, from = ltPhysician, p.birth.AddDate(25, 0, 0)
	}
	if !from.Before(refDay) {
		typ, from = ltDriving, later(adult, time.Date(1995, 1, 1, 0, 0, 0, 0, time.UTC))
	}
	is.typ = typ
	to := refDay
	if typ.code == ltMarriage.code {
		to = earlier(refDay, p.birth.AddDate(45, 0, 0))
	}
	is.issuedOn = randomDay(r, from, to)
	if term := pick(r, typ.terms); term > 0 {
		is.issuedOn = renewed(r, is.issuedOn, term)
		is.validUntil = is.issuedOn.AddDate(term, 0, -1)
	}
	switch x := r.IntN(100); {
	case p.status == '2' && typ.code == ltDriving.code:
		is.zzzt = zzztCancelled // a driving licence is cancelled on its holder's death
	case x < 2 && (typ.code == ltDriving.code || typ.code == ltPhysician.code):
		is.zzzt = zzztSuspended
	case x < 3 && typ.code != ltMarriage.code:
		is.zzzt = zzztRevoked
	}
	return is
}

// orgFacts is what a licence needs of organization i, read from its regenerated row.
type orgFacts struct {
	uscc, name, ztlx, djzt string
	established            time.Time
	region                 ident.Region
}

func (g *Generator) orgFacts(i int) orgFacts {
	var rr rowRand
	row := g.orgRow(&rr, i)
	region, _ := ident.LookupRegion(row[8].(string))
	return orgFacts{
		uscc: row[0].(string), name: row[1].(string), ztlx: row[2].(string), djzt: row[7].(string),
		established: row[6].(time.Time), region: region,
	}
}

// renewed is the issue date of the current licence of a term first issued on first:
// renewed every term up to refDay, except that a few holders let the last renewal lapse
// (their licence has expired).
func renewed(r *rand.Rand, first time.Time, term int) time.Time {
	last := first
	for last.AddDate(term, 0, 0).Before(refDay) {
		last = last.AddDate(term, 0, 0)
	}
	if r.IntN(100) < 8 && !last.AddDate(-term, 0, 0).Before(first) {
		last = last.AddDate(-term, 0, 0)
	}
	return last
}

// randomDay returns a day in [from, to] (to when from is after it).
func randomDay(r *rand.Rand, from, to time.Time) time.Time {
	days := int(to.Sub(from).Hours() / 24)
	if days <= 0 {
		return to
	}
	return from.AddDate(0, 0, r.IntN(days+1))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
