package ident

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// Administrative division codes (GB/T 2260): PPCCDD, province PP, city CC, county DD.
// Only the province prefix is checked in general, because county codes change every
// year (districts merge, counties become districts) and an identifier issued under an
// old code stays valid for life. The table below is the part of the code list the demo
// uses, so that it can name places; it is not a validity list.

// provinces are the province-level divisions of GB/T 2260, including Taiwan (71), Hong
// Kong (81) and Macao (82).
var provinces = map[string]string{
	"11": "北京市", "12": "天津市", "13": "河北省", "14": "山西省", "15": "内蒙古自治区",
	"21": "辽宁省", "22": "吉林省", "23": "黑龙江省",
	"31": "上海市", "32": "江苏省", "33": "浙江省", "34": "安徽省", "35": "福建省", "36": "江西省", "37": "山东省",
	"41": "河南省", "42": "湖北省", "43": "湖南省", "44": "广东省", "45": "广西壮族自治区", "46": "海南省",
	"50": "重庆市", "51": "四川省", "52": "贵州省", "53": "云南省", "54": "西藏自治区",
	"61": "陕西省", "62": "甘肃省", "63": "青海省", "64": "宁夏回族自治区", "65": "新疆维吾尔自治区",
	"71": "台湾省", "81": "香港特别行政区", "82": "澳门特别行政区",
}

// isProvince marks the province-level codes by number, for the checks that run on every
// record: an array index instead of a map lookup.
var isProvince = func() (t [100]bool) {
	for code := range provinces {
		t[atoi(code)] = true
	}
	return t
}()

// provinceCode reports whether two ASCII digits are a province-level code.
func provinceCode(prefix2 string) bool { return isProvince[atoi(prefix2)] }

// demoDivisions are the city- and county-level codes the demo's synthetic registers use.
var demoDivisions = map[string]string{
	"330100": "杭州市",
	"330102": "上城区", "330105": "拱墅区", "330106": "西湖区", "330108": "滨江区", "330110": "余杭区",
	"330200": "宁波市",
	"330203": "海曙区", "330212": "鄞州区", "330213": "奉化区",
	"320100": "南京市",
	"320102": "玄武区", "320104": "秦淮区", "320106": "鼓楼区",
	"320500": "苏州市",
	"320505": "虎丘区", "320506": "吴中区", "320508": "姑苏区",
}

// CheckRegion reports why code is not a GB/T 2260 region code, or nil when it is six
// digits starting with a province-level code. Failures have Kind length, charset or
// province.
func CheckRegion(code string) error {
	if len(code) != 6 {
		return errorf(KindLength, "region code %q must have 6 digits, has %d", code, utf8.RuneCountInString(code))
	}
	for i := 0; i < 6; i++ {
		if !isDigit(code[i]) {
			return errorf(KindCharset, "region code %q must be 6 digits, character %d is %s", code, i+1, quoteAt(code, i))
		}
	}
	if !provinceCode(code[:2]) {
		return errorf(KindProvince, "region code %q does not start with a province code (11–15, 21–23, 31–37, 41–46, 50–54, 61–65, 71, 81, 82)", code)
	}
	return nil
}

// ProvinceName returns the name of the province-level division whose two-digit code is
// prefix2, and reports whether there is one.
func ProvinceName(prefix2 string) (string, bool) {
	name, ok := provinces[prefix2]
	return name, ok
}

// Region is one row of the shipped table, with its enclosing divisions. A province row
// has empty city fields; a city row is its own city.
type Region struct {
	Code, Name, CityCode, CityName, ProvinceCode, ProvinceName string
}

// LookupRegion returns the shipped row for code: every province-level division and the
// demo's cities and counties. It reports false for codes outside the table, which may
// still be valid (see CheckRegion).
func LookupRegion(code string) (Region, bool) {
	if len(code) != 6 {
		return Region{}, false
	}
	prov, ok := provinces[code[:2]]
	if !ok {
		return Region{}, false
	}
	r := Region{Code: code, ProvinceCode: code[:2] + "0000", ProvinceName: prov}
	if code[2:] == "0000" {
		r.Name = prov
		return r, true
	}
	if r.Name, ok = demoDivisions[code]; !ok {
		return Region{}, false
	}
	r.CityCode = code[:4] + "00"
	if r.CityName, ok = demoDivisions[r.CityCode]; !ok {
		// A county whose city is missing would be a table error; the table test
		// keeps this branch unreachable.
		return Region{}, false
	}
	return r, true
}

// DemoCounties returns the county-level rows of the shipped table, sorted by code.
func DemoCounties() []Region {
	var out []Region
	for code := range demoDivisions {
		if code[4:] == "00" {
			continue
		}
		r, _ := LookupRegion(code)
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Region) int { return strings.Compare(a.Code, b.Code) })
	return out
}
