package main

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mattn/go-runewidth"

	"govx/exchange/service/servicetest"
)

// TestTableAlignsChinese: a Chinese character takes two columns of a terminal, and the
// columns after it line up with the header and with rows of Latin text.
func TestTableAlignsChinese(t *testing.T) {
	var out bytes.Buffer
	tb := newTable(&out, "NAME", "REGION", "NOTE")
	tb.add("张三", "330106", "ok")
	tb.add("欧阳娜娜", "320102", "two\nlines")
	tb.add("Li", "330203", "")
	if err := tb.flush(); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME      REGION  NOTE\n" +
		"张三      330106  ok\n" +
		"欧阳娜娜  320102  two\\nlines\n" +
		"Li        330203\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// TestPullTableAlignsChinese: `govx pull --format table` of masked IDs next to Chinese
// names: every column of every row starts at the terminal column of its header.
func TestPullTableAlignsChinese(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Persons: 9})
	conn := consumerExchange(t, f, "mz-3301/dibao-review")
	out, err := runGovx(t, append([]string{"pull", "population.person", "--purpose", "minimum-living-allowance-review"}, conn...)...)
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	lines := strings.Split(out, "\n")
	header := lines[0]
	if !strings.HasPrefix(header, "ID_NUMBER") || !strings.Contains(out, "张三") {
		t.Fatalf("not a table of persons:\n%s", out)
	}
	starts := func(line string) []int {
		var cols []int
		for _, m := range regexp.MustCompile(`\S+`).FindAllStringIndex(line, -1) {
			cols = append(cols, runewidth.StringWidth(line[:m[0]]))
		}
		return cols
	}
	want := starts(header)
	rows := 0
	for _, l := range lines[1:] {
		if !strings.Contains(l, "张三") {
			continue
		}
		rows++
		if got := starts(l); !slices.Equal(got, want) {
			t.Errorf("row columns start at %v, the header's at %v:\n%s\n%s", got, want, header, l)
		}
	}
	if rows != len(f.IDs["3301"]) {
		t.Errorf("%d rows, want %d:\n%s", rows, len(f.IDs["3301"]), out)
	}
}
