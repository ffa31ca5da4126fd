package main

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestTimedOut: client-go's rate limiter gives up a moment before the
// deadline with an error of its own; that is a timeout (exit 2), not a failure.
func TestTimedOut(t *testing.T) {
	limiter := errors.New("client rate limiter Wait returned an error: rate: Wait(n=1) would exceed context deadline")
	soon, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	later, cancel2 := context.WithTimeout(context.Background(), time.Hour)
	defer cancel2()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"the rate limiter at the deadline", soon, limiter, true},
		{"a wrapped deadline", later, fmt.Errorf("get: %w", context.DeadlineExceeded), true},
		{"the same words long before the deadline", later, limiter, false},
		{"another error", soon, errors.New("forbidden"), false},
		{"no error", soon, nil, false},
	} {
		if got := timedOut(tc.ctx, tc.err); got != tc.want {
			t.Errorf("%s: timedOut = %v, want %v", tc.name, got, tc.want)
		}
	}
}
