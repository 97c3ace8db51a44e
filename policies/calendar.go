package policies

import (
	"errors"
	"fmt"
	"govx/schemas"
	"time"
)

// calendarYear is one calendar/<year>.yaml.
type calendarYear struct {
	Year        int           `yaml:"year"`
	Holidays    []calendarDay `yaml:"holidays"`
	WorkingDays []calendarDay `yaml:"working_days"`
	file        string
}

// calendarDay is a date, or a stretch from/to (inclusive), with its name.
type calendarDay struct {
	Date string `yaml:"date"`
	From string `yaml:"from"`
	To   string `yaml:"to"`
	Name string `yaml:"name"`
}

// Calendar is the working-day calendar (工作日) of the years it was loaded with: a weekday
// is a working day unless it is a public holiday; a Saturday or Sunday is a day off unless
// it is an adjusted working day (调休上班). Days are days in China Standard Time.
type Calendar struct {
	years   map[int]bool
	off     map[string]string // date -> holiday name (weekdays and weekend days)
	working map[string]string // weekend date -> why it is a working day
	first   int
	last    int
}

// ErrOutsideCalendar is returned for a date in a year the calendar does not hold.
var ErrOutsideCalendar = errors.New("the working-day calendar does not cover the date")

func newCalendar(ys []calendarYear) (*Calendar, []Problem) {
	c := &Calendar{years: map[int]bool{}, off: map[string]string{}, working: map[string]string{}}
	var probs []Problem
	for _, y := range ys {
		bad := func(entry, msg string) { probs = append(probs, Problem{File: y.file, Entry: entry, Message: msg}) }
		if y.Year < 2000 || y.Year > 2100 {
			bad("", fmt.Sprintf("year %d is missing or out of range", y.Year))
			continue
		}
		if c.years[y.Year] {
			bad("", fmt.Sprintf("year %d is given twice", y.Year))
			continue
		}
		c.years[y.Year] = true
		for _, h := range y.Holidays {
			from, to, err := h.span(y.Year)
			if err != nil {
				bad("holiday "+h.Name, err.Error())
				continue
			}
			for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
				c.off[d.Format(time.DateOnly)] = h.Name
			}
		}
		for _, w := range y.WorkingDays {
			from, to, err := w.span(y.Year)
			if err != nil {
				bad("working day "+w.Name, err.Error())
				continue
			}
			for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
				key := d.Format(time.DateOnly)
				if wd := d.Weekday(); wd != time.Saturday && wd != time.Sunday {
					bad("working day "+key, "is a "+wd.String()+": only a Saturday or Sunday is an adjusted working day")
				}
				if name, ok := c.off[key]; ok {
					bad("working day "+key, "is also a holiday ("+name+")")
				}
				c.working[key] = w.Name
			}
		}
	}
	for y := range c.years {
		if c.first == 0 || y < c.first {
			c.first = y
		}
		if y > c.last {
			c.last = y
		}
	}
	for y := c.first; y <= c.last && c.first != 0; y++ {
		if !c.years[y] {
			probs = append(probs, Problem{File: CalendarDir, Message: fmt.Sprintf("year %d is missing between %d and %d", y, c.first, c.last)})
		}
	}
	if len(c.years) == 0 {
		probs = append(probs, Problem{File: CalendarDir, Message: "no calendar year: deadlines could not be computed"})
	}
	return c, probs
}

func (d calendarDay) span(year int) (time.Time, time.Time, error) {
	parse := func(s string) (time.Time, error) {
		t, err := time.ParseInLocation(time.DateOnly, s, schemas.ChinaTime)
		if err != nil {
			return t, fmt.Errorf("%q is not a date (2026-10-01)", s)
		}
		if t.Year() != year {
			return t, fmt.Errorf("%s is not in %d, the file's year", s, year)
		}
		return t, nil
	}
	switch {
	case d.Date != "" && d.From == "" && d.To == "":
		t, err := parse(d.Date)
		return t, t, err
	case d.Date == "" && d.From != "" && d.To != "":
		from, err := parse(d.From)
		if err != nil {
			return from, from, err
		}
		to, err := parse(d.To)
		if err == nil && to.Before(from) {
			err = fmt.Errorf("to %s is before from %s", d.To, d.From)
		}
		return from, to, err
	}
	return time.Time{}, time.Time{}, errors.New("give either date, or from and to")
}

// Years returns the first and last year the calendar covers.
func (c *Calendar) Years() (first, last int) { return c.first, c.last }

// WorkingDay reports whether the day of t (China Standard Time) is a working day. A
// day in a year the calendar does not cover is an error wrapping ErrOutsideCalendar.
func (c *Calendar) WorkingDay(t time.Time) (bool, error) {
	d := chinaDate(t)
	if !c.years[d.Year()] {
		return false, fmt.Errorf("%w: %s is in %d, and the calendar holds %d–%d; add policies/calendar/%d.yaml",
			ErrOutsideCalendar, d.Format(time.DateOnly), d.Year(), c.first, c.last, d.Year())
	}
	key := d.Format(time.DateOnly)
	if _, ok := c.off[key]; ok {
		return false, nil
	}
	if wd := d.Weekday(); wd == time.Saturday || wd == time.Sunday {
		_, ok := c.working[key]
		return ok, nil
	}
	return true, nil
}

// Deadline returns the last day of a time limit of n working days starting at t: the
// n-th working day after the day of t (the day a matter arrives does not count, however
// early it arrives), as the instant that day ends in China Standard Time. Whatever is
// still open at that instant is overdue. Every day walked must be in the calendar.
func (c *Calendar) Deadline(t time.Time, n int) (time.Time, error) {
	if n < 1 {
		return time.Time{}, fmt.Errorf("a time limit of %d working days", n)
	}
	d := chinaDate(t)
	if _, err := c.WorkingDay(d); err != nil {
		return time.Time{}, err
	}
	for left := n; left > 0; {
		d = d.AddDate(0, 0, 1)
		ok, err := c.WorkingDay(d)
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			left--
		}
	}
	return d.AddDate(0, 0, 1), nil
}
