package synth

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"govx/schemas/ident"
	"govx/schemas/license"
)

// Issuer is a department that issues licences in the synthetic e-licence register.
type Issuer struct {
	Code   string // e.g. scjg-3301: the issuer field of its licences
	Name   string // e.g. 杭州市市场监督管理局
	Region string // its city, GB/T 2260
}

// issuerKind is an issuing authority found in every city: the prefix of its code and
// the name after the city's.
type issuerKind struct{ prefix, suffix string }

var (
	issuerMarket    = issuerKind{"scjg", "市场监督管理局"}
	issuerStaffing  = issuerKind{"bb", "机构编制委员会办公室"} // registers public institutions and government bodies
	issuerCivil     = issuerKind{"mz", "民政局"}
	issuerHousing   = issuerKind{"zj", "住房和城乡建设局"}
	issuerLand      = issuerKind{"zrzy", "规划和自然资源局"}
	issuerTraffic   = issuerKind{"ga", "公安局交通警察支队"}
	issuerEcology   = issuerKind{"sthj", "生态环境局"}
	issuerHealth    = issuerKind{"wj", "卫生健康委员会"}
	issuerEducation = issuerKind{"jy", "教育局"}

	issuerKinds = []issuerKind{issuerMarket, issuerStaffing, issuerCivil, issuerHousing, issuerLand,
		issuerTraffic, issuerEcology, issuerHealth, issuerEducation}
)

// issuerCode is the code of kind's authority in a city: mz-3301 is 杭州市民政局, as the
// departments data of the policies names it.
func issuerCode(kind issuerKind, cityCode string) string {
	return kind.prefix + "-" + strings.TrimSuffix(cityCode, "00")
}

// Issuers returns every department the generator issues licences as: each issuing
// authority in each city of the demo counties, sorted by code. It does not depend on
// the seed; their keys do (IssuerKey).
func Issuers() []Issuer {
	return issuersOf(countyInfos(ident.DemoCounties()))
}

func issuersOf(cinfo []countyInfo) []Issuer {
	seen := map[string]bool{}
	var out []Issuer
	for _, c := range cinfo {
		if seen[c.CityCode] {
			continue
		}
		seen[c.CityCode] = true
		for _, k := range issuerKinds {
			out = append(out, Issuer{Code: issuerCode(k, c.CityCode), Name: c.CityName + k.suffix, Region: c.CityCode})
		}
	}
	slices.SortFunc(out, func(a, b Issuer) int { return strings.Compare(a.Code, b.Code) })
	return out
}

// IssuerKey returns the demo signing key of an issuer for a seed: the Ed25519 key whose
// 32-byte seed is SHA-256("govx synth licence issuer key v1", 0, the generator's seed in
// decimal, 0, the issuer code). Anyone can derive it from the seed, which is what a
// demo needs (the same seed always signs alike, and a test can forge or re-sign a
// licence) and why these keys must never sign anything real.
func IssuerKey(seed uint64, code string) ed25519.PrivateKey {
	sum := sha256.Sum256([]byte("govx synth licence issuer key v1\x00" + strconv.FormatUint(seed, 10) + "\x00" + code))
	return ed25519.NewKeyFromSeed(sum[:])
}

// IssuersYAML returns the policy data file listing the issuers and their public keys
// for a seed (policies/issuers.yaml ships the one for seed 1, the demo's default;
// `govx demo` and `govx gen --issuers` write it for theirs).
func IssuersYAML(seed uint64) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `# The licence issuers (发证机关) and their Ed25519 public keys: the exchange verifies the
# issuer_signature of every e-licence (license.certificate) with the key of its issuer.
# A licence whose issuer is not listed here cannot be verified.
#
#   code        the issuer field of its licences
#   name        the department's name
#   region      GB/T 2260 code of its area
#   public_key  "ed25519:" and the 32-byte public key in standard base64
#
# These are the synthetic registers' demo keys for seed %d, written by
# connectors/synth.IssuersYAML (govx gen --seed %d --issuers FILE): each private key is
# derived from the seed, so anyone can sign as these issuers. Replace them with the
# issuing departments' real keys before verifying real licences.
issuers:
`, seed, seed)
	for _, is := range Issuers() {
		pub := IssuerKey(seed, is.Code).Public().(ed25519.PublicKey)
		fmt.Fprintf(&b, "  - {code: %s, name: %s, region: %q, public_key: %q}\n", is.Code, is.Name, is.Region, license.FormatPublicKey(pub))
	}
	return []byte(b.String())
}
