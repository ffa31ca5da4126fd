package metrics

import (
	"fmt"
	"testing"
	"time"
)

func TestAnswersStayBoundedAndKeepTheLongestLived(t *testing.T) {
	c := answers[bool]{}
	c.put("prometheus", true, time.Hour)
	for i := range 2 * maxAnswers {
		c.put(fmt.Sprintf("junk-%d", i), false, time.Minute)
		if len(c) > maxAnswers {
			t.Fatalf("%d answers, limit %d", len(c), maxAnswers)
		}
	}
	if v, ok := c.get("prometheus"); !ok || !v {
		t.Fatalf("a flood of short-lived answers pushed out the longest-lived one")
	}
	c.put("expired", true, -time.Second)
	if _, ok := c.get("expired"); ok {
		t.Fatalf("an expired answer is served")
	}
}
