package backoff

import (
	"context"
	"testing"
	"time"
)

// TestNextDoublesWithJitter: every wait is within half a step below the step, the steps
// double up to the limit and stay there, and Reset starts again from the first.
func TestNextDoublesWithJitter(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	steps := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for round := 0; round < 2; round++ {
		for i, s := range steps {
			step := s * time.Millisecond
			if d := b.Next(); d < step/2 || d > step {
				t.Fatalf("round %d wait %d = %v, want within [%v, %v]", round, i, d, step/2, step)
			}
		}
		b.Reset()
	}
}

// TestJitterSpreads: many retriers of one outage do not all wait the same.
func TestJitterSpreads(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 100 {
		b := New(time.Second, time.Minute)
		seen[b.Next()] = true
	}
	if len(seen) < 50 {
		t.Fatalf("100 first waits took only %d distinct values", len(seen))
	}
}

func TestNewClamps(t *testing.T) {
	b := New(0, 0)
	if d := b.Next(); d <= 0 || d > time.Millisecond {
		t.Fatalf("New(0, 0).Next() = %v, want a positive wait of at most 1ms", d)
	}
	b = New(time.Second, time.Millisecond)
	for range 3 {
		if d := b.Next(); d < time.Second/2 || d > time.Second {
			t.Fatalf("a limit below the first: wait %v, want about 1s", d)
		}
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on a cancelled context reported the whole wait as passed")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep of 1ms on a live context reported it cut short")
	}
}
