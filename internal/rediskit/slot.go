package rediskit

import (
	"strconv"
	"strings"
	"sync"
)

// Slots is the number of hash slots of a Redis Cluster.
const Slots = 16384

// Slot returns the cluster slot key hashes to: CRC16 (XMODEM) of its hash
// tag (the part between the first '{' and the next '}', when not empty) or
// of the whole key, modulo Slots.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % Slots)
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

var (
	tagsOnce sync.Once
	tags     [Slots]string
)

// SlotTag returns a short hash tag, braces included, whose keys hash to
// slot: a key that must share a script with keys of some slot (a marker
// next to each conversation's counters) is named with it.
func SlotTag(slot int) string {
	tagsOnce.Do(func() {
		left := Slots
		for i := 0; left > 0; i++ {
			t := strconv.FormatInt(int64(i), 36)
			if s := int(crc16(t) % Slots); tags[s] == "" {
				tags[s] = "{" + t + "}"
				left--
			}
		}
	})
	return tags[slot]
}
