package rediskit

import "testing"

// The slots of known keys, as CLUSTER KEYSLOT answers them (and as the
// Redis Cluster specification's example gives 123456789 → 0x31C3).
func TestSlotMatchesRedis(t *testing.T) {
	if got := crc16("123456789"); got != 0x31C3 {
		t.Fatalf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	for key, want := range map[string]int{
		"foo":                  12182,
		"bar":                  5061,
		"{user1000}.following": 3443,
		"{user1000}.followers": 3443,
		"foo{}{bar}":           8363, // an empty tag: the whole key
		"foo{{bar}}zap":        4015, // the tag is "{bar"
		"foo{bar}{zap}":        5061, // the first tag: "bar"
	} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestEverySlotHasATag(t *testing.T) {
	for s := range Slots {
		tag := SlotTag(s)
		if got := Slot("x:" + tag + ":y"); got != s {
			t.Fatalf("SlotTag(%d) = %q hashes to %d", s, tag, got)
		}
	}
}
