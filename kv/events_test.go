package kv

import (
	"errors"
	"testing"
	"time"
)

func TestEvents(t *testing.T) {
	s := openTemp(t)
	a, b := newRun(t, s, "a"), newRun(t, s, "b")
	at := time.Date(2026, 11, 25, 9, 45, 12, 0, time.UTC)
	for i, msg := range []string{"start", "nan at step 3", "resume"} {
		if err := s.AddEvent(a.ID, Event{Step: i, Kind: "info", Message: msg, Time: at}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddEvent(b.ID, Event{Kind: "info", Message: "other"}); err != nil {
		t.Fatal(err)
	}
	// The sequence continues after a reopen (the counter is rebuilt from the store).
	s = reopen(t, s, Options{})
	if err := s.AddEvent(a.ID, Event{Step: 3, Kind: "warn", Message: "after reopen"}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"start", "nan at step 3", "resume", "after reopen"}
	if len(evs) != len(want) {
		t.Fatalf("%d events: %+v", len(evs), evs)
	}
	for i, e := range evs {
		if e.Message != want[i] || e.Seq != uint64(i+1) || e.Step != i {
			t.Errorf("event %d = %+v", i, e)
		}
	}
	if !evs[0].Time.Equal(at) || evs[3].Time.IsZero() {
		t.Errorf("times %v %v", evs[0].Time, evs[3].Time)
	}
	if evs, _ := s.Events(b.ID); len(evs) != 1 || evs[0].Seq != 1 {
		t.Errorf("other run's events: %+v", evs)
	}
	if err := s.AddEvent("nope", Event{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown run: %v", err)
	}
}
