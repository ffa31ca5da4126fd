package controller

import (
	"strings"
	"testing"
)

func TestTruncateKeepsEventNotesWithinTheAPILimit(t *testing.T) {
	long := strings.Repeat("shop-staging-feature-0001, ", 200)
	if got := truncate(long); len(got) > 1024 {
		t.Fatalf("note of %d bytes; the API server takes 1024", len(got))
	}
	if got := truncate("short"); got != "short" {
		t.Fatalf("a short note changed: %q", got)
	}
}
