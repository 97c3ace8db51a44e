package schemas

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"govx/schemas/ident"
)

// checkFunc validates a normalized string value; it returns a reason code and message.
type checkFunc func(s string) error

// checks are the named validators a field's `check` may use.
var checks = map[string]checkFunc{
	"citizen_id":  ident.CheckCitizenID,
	"uscc":        ident.CheckUSCC,
	"region_code": ident.CheckRegion,
	"parcel_code": checkParcelCode,
}

func checkNames() string {
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// checkParcelCode checks the 19-character 宗地代码 of TD/T 1001: a 6-digit county code,
// 3+3 digits of cadastral zone and sub-zone, the ownership (G state, J collective, Z
// undetermined) and parcel-type letters, and a 5-digit sequence number. It reads the
// form by hand (the regular expression it replaces, ^[0-9]{12}[GJZ][ABSXCDEFWY][0-9]{5}$,
// is kept in checks_test.go, which holds the two equal).
func checkParcelCode(s string) error {
	if !isParcelCode(s) {
		return &ident.Error{Kind: "format", Msg: fmt.Sprintf("parcel code %q must be 6-digit region, 6 digits, [GJZ], a parcel type letter and 5 digits", s)}
	}
	if err := ident.CheckRegion(s[:6]); err != nil {
		return fmt.Errorf("parcel code region: %w", err)
	}
	return nil
}

func isParcelCode(s string) bool {
	if len(s) != 19 || !allDigits(s[:12]) || !allDigits(s[14:]) {
		return false
	}
	return strings.IndexByte("GJZ", s[12]) >= 0 && strings.IndexByte("ABSXCDEFWY", s[13]) >= 0
}

// checkCode returns the stable reason code of a validator error.
func checkCode(err error) string {
	var ie *ident.Error
	if errors.As(err, &ie) {
		return ie.Kind
	}
	return "check"
}
