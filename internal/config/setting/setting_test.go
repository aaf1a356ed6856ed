package setting

import (
	"reflect"
	"testing"
	"time"
)

type sample struct {
	Queue    int           `key:"a.queue" default:"256"`
	Rate     float64       `key:"a.rate" default:"50" negative:"unlimited"`
	Wait     time.Duration `default:"2ms"`
	Grace    time.Duration `key:"a.grace" default:"0s"`
	Name     string        `default:"chat-log"`
	Replicas int           `key:"a.replicas" default:"auto"`
	List     []string      `default:"a, b"`
	Inner    struct {
		Burst int `default:"5"`
	}
	Plain int
}

func TestFillGivesZeroFieldsTheirDefaults(t *testing.T) {
	var s sample
	Fill(&s)
	want := sample{Queue: 256, Rate: 50, Wait: 2 * time.Millisecond, Name: "chat-log", List: []string{"a", "b"}}
	want.Inner.Burst = 5
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v, want %+v", s, want)
	}
}

func TestFillKeepsSetValuesAndMeaningfulNegatives(t *testing.T) {
	s := sample{Queue: -3, Rate: -1, Wait: -time.Second, Grace: -time.Second, Name: "x", Replicas: 3, Plain: -1}
	Fill(&s)
	if s.Queue != 256 || s.Rate != -1 || s.Wait != 2*time.Millisecond || s.Grace != -time.Second || s.Name != "x" || s.Replicas != 3 || s.Plain != -1 {
		t.Fatalf("got %+v", s)
	}
}

func TestFieldsNameTheirKeys(t *testing.T) {
	var keys []string
	for _, f := range Fields(&sample{}) {
		keys = append(keys, f.Key)
	}
	want := []string{"a.queue", "a.rate", "", "a.grace", "", "a.replicas", "", ""}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
}
