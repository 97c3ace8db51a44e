package ident_test

import (
	"errors"
	"fmt"

	"govx/schemas/ident"
)

func Example() {
	fmt.Println(ident.CheckCitizenID("11010519491231002X"))

	// A mistyped check character; Kind is what a dead-letter record carries.
	err := ident.CheckCitizenID("110105194912310023")
	var e *ident.Error
	if errors.As(err, &e) {
		fmt.Println(e.Kind+":", e)
	}

	born, _ := ident.BirthDate("11010519491231002X")
	fmt.Println(born.Format("2006-01-02"))

	fmt.Println(ident.CheckUSCC("91350100M000100Y43"))

	// The check character is right but 工商 (authority 9) registers no type 4.
	body := "94350100M000100Y4"
	check, _ := ident.USCCCheckChar(body)
	fmt.Println(ident.CheckUSCC(body + string(check)))

	r, _ := ident.LookupRegion("330106")
	fmt.Println(r.ProvinceName, r.CityName, r.Name)
	// Output:
	// <nil>
	// check_char: check character is "3", expected "X"
	// 1949-12-31
	// <nil>
	// USCC entity type "4" is not one that authority "9" (工商) registers
	// 浙江省 杭州市 西湖区
}
