package policies

import (
	"errors"
	"govx/schemas"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestShippedCalendarWorkingDays(t *testing.T) {
	p, err := EmbeddedProcess()
	if err != nil {
		t.Fatal(err)
	}
	c := p.Calendar
	if first, last := c.Years(); first != 2025 || last != 2026 {
		t.Fatalf("years %d–%d, want 2025–2026", first, last)
	}
	for _, tc := range []struct {
		day  string
		work bool
	}{
		{"2025-01-01", false}, // 元旦, a Wednesday
		{"2025-01-02", true},
		{"2025-01-26", true},  // 调休: a Sunday worked before the Spring Festival
		{"2025-02-04", false}, // last day of the Spring Festival, a Tuesday
		{"2025-02-05", true},
		{"2025-02-08", true},  // 调休 Saturday
		{"2025-02-09", false}, // an ordinary Sunday
		{"2025-04-27", true},  // 调休 Sunday before Labour Day
		{"2025-05-05", false}, // Labour Day, a Monday
		{"2025-06-02", false}, // Dragon Boat, a Monday
		{"2025-09-28", true},  // 调休 Sunday
		{"2025-10-08", false}, // National Day and Mid-Autumn, a Wednesday
		{"2025-10-11", true},  // 调休 Saturday
		{"2025-12-31", true},
		{"2026-01-02", false}, // New Year 2026, a Friday
		{"2026-01-04", true},  // 调休 Sunday
		{"2026-02-14", true},  // 调休 Saturday before the Spring Festival
		{"2026-02-23", false}, // last day of the Spring Festival, a Monday
		{"2026-02-28", true},  // 调休 Saturday after it
		{"2026-05-09", true},  // 调休 Saturday
		{"2026-06-19", false}, // Dragon Boat, a Friday
		{"2026-09-20", true},  // 调休 Sunday
		{"2026-09-25", false}, // Mid-Autumn, a Friday
		{"2026-10-07", false},
		{"2026-10-10", true}, // 调休 Saturday
		{"2026-10-11", false},
	} {
		d, _ := time.ParseInLocation(time.DateOnly, tc.day, schemas.ChinaTime)
		got, err := c.WorkingDay(d)
		if err != nil || got != tc.work {
			t.Errorf("%s (%s): working %v, %v; want %v", tc.day, d.Weekday(), got, err, tc.work)
		}
	}
}

func TestDeadlines(t *testing.T) {
	p, err := EmbeddedProcess()
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name  string
		start string
		n     int
		due   string // the last day, in China Standard Time
	}{
		{"plain week", "2026-03-02T10:00:00+08:00", 2, "2026-03-04"},
		{"over a weekend", "2026-03-05T10:00:00+08:00", 2, "2026-03-09"},
		{"the day it arrives never counts, even at 00:01", "2026-03-02T00:01:00+08:00", 1, "2026-03-03"},
		{"a Friday night arrival (UTC still Friday)", "2026-03-06T15:30:00Z", 1, "2026-03-09"}, // 23:30 CST Friday
		{"UTC Sunday is Monday in Shanghai", "2026-03-08T17:00:00Z", 1, "2026-03-10"},          // 01:00 CST Monday
		{"adjusted Saturday counts", "2026-02-12T09:00:00+08:00", 1, "2026-02-13"},
		{"adjusted Saturday counts (2)", "2026-02-13T09:00:00+08:00", 1, "2026-02-14"},
		{"across the Spring Festival", "2026-02-13T09:00:00+08:00", 2, "2026-02-24"},
		{"five days across the Spring Festival", "2026-02-12T09:00:00+08:00", 5, "2026-02-26"},
		{"ten days to the 调休 Saturday", "2026-02-12T09:00:00+08:00", 10, "2026-03-04"},
		{"across National Day", "2026-09-29T09:00:00+08:00", 2, "2026-10-08"},
		{"into the 调休 Saturday after National Day", "2026-09-30T09:00:00+08:00", 2, "2026-10-09"},
		{"across the year boundary", "2025-12-30T09:00:00+08:00", 2, "2026-01-04"},
		{"from the 2025 National Day holiday", "2025-10-03T09:00:00+08:00", 1, "2025-10-09"},
		{"Labour Day 2025 with its 调休 Sunday", "2025-04-25T09:00:00+08:00", 1, "2025-04-27"},
		{"Labour Day 2025", "2025-04-29T09:00:00+08:00", 2, "2025-05-06"},
	} {
		got, err := p.Calendar.Deadline(at(tc.start), tc.n)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		want, _ := time.ParseInLocation(time.DateOnly, tc.due, schemas.ChinaTime)
		if !got.Equal(want.AddDate(0, 0, 1)) {
			t.Errorf("%s: %d working days from %s end %s, want the end of %s", tc.name, tc.n, tc.start, got.In(schemas.ChinaTime), tc.due)
		}
	}
}

// A date outside the shipped years is an error naming the missing file, never a guess.
func TestDeadlineOutsideCalendar(t *testing.T) {
	p, err := EmbeddedProcess()
	if err != nil {
		t.Fatal(err)
	}
	for _, start := range []time.Time{
		time.Date(2026, 12, 30, 10, 0, 0, 0, schemas.ChinaTime), // walks into 2027
		time.Date(2024, 12, 31, 10, 0, 0, 0, schemas.ChinaTime), // starts in 2024
		time.Date(2031, 5, 6, 10, 0, 0, 0, schemas.ChinaTime),
	} {
		_, err := p.Calendar.Deadline(start, 5)
		if !errors.Is(err, ErrOutsideCalendar) || !strings.Contains(err.Error(), "policies/calendar/") {
			t.Errorf("from %s: %v, want ErrOutsideCalendar naming the file to add", start.Format(time.DateOnly), err)
		}
	}
}

func TestProcessLimitsAndProblems(t *testing.T) {
	p, err := EmbeddedProcess()
	if err != nil {
		t.Fatal(err)
	}
	sx := p.Limit("610100")
	if sx.Province != "61" || sx.Review != 2 || sx.Answer != 5 || sx.PublishAndAnswer != 10 {
		t.Errorf("Shaanxi limits %+v, want review 2, answer 5, publish_and_answer 10", sx)
	}
	if d := p.Limit(""); d.Province != "default" {
		t.Errorf("a national department gets %+v, want the default", d)
	}

	dir := t.TempDir()
	if err := copyProcess(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadProcess(dir); err != nil {
		t.Fatalf("the copied process policy does not load: %v", err)
	}
	bad := filepath.Join(dir, CalendarDir, "2026.yaml")
	if err := os.WriteFile(bad, []byte("year: 2026\nworking_days:\n  - {date: 2026-03-04, name: x}\nholidays:\n  - {date: 2025-03-04, name: y}\n  - {date: 2026-03-05, nmae: z}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadProcess(dir)
	if err == nil || !strings.Contains(err.Error(), `unknown key "nmae"`) {
		t.Errorf("a misspelt key: %v", err)
	}
	os.WriteFile(bad, []byte("year: 2026\nworking_days:\n  - {date: 2026-03-04, name: x}\nholidays:\n  - {date: 2025-03-04, name: y}\n"), 0o644)
	_, err = LoadProcess(dir)
	if err == nil || !strings.Contains(err.Error(), "is a Wednesday") || !strings.Contains(err.Error(), "not in 2026") {
		t.Errorf("a weekday as 调休 and a date of another year: %v", err)
	}
}
