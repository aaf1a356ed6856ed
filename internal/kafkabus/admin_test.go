package kafkabus

import (
	"strings"
	"testing"
)

func TestReplicationAutoFollowsTheCluster(t *testing.T) {
	for _, tc := range []struct {
		name                string
		rf, minISR, brokers int
		wantRF, wantMinISR  int
		wantErr             string
	}{
		{name: "auto on a single broker is 1 and 1", brokers: 1, wantRF: 1, wantMinISR: 1},
		{name: "auto on two brokers is 2 and 2", brokers: 2, wantRF: 2, wantMinISR: 2},
		{name: "auto on three brokers is 3 and 2", brokers: 3, wantRF: 3, wantMinISR: 2},
		{name: "auto on five brokers stays 3 and 2", brokers: 5, wantRF: 3, wantMinISR: 2},
		{name: "an explicit factor ignores the broker count", rf: 3, brokers: 1, wantRF: 3, wantMinISR: 2},
		{name: "an explicit factor of 1 gets min ISR 1", rf: 1, brokers: 3, wantRF: 1, wantMinISR: 1},
		{name: "explicit values are kept", rf: 5, minISR: 3, wantRF: 5, wantMinISR: 3},
		{name: "min ISR above the factor is refused", rf: 2, minISR: 3, wantErr: "exceeds the replication factor"},
		{name: "an explicit min ISR above an auto factor is refused", minISR: 2, brokers: 1, wantErr: "exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rf, minISR, err := replication(tc.rf, tc.minISR, tc.brokers)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || rf != tc.wantRF || minISR != tc.wantMinISR {
				t.Fatalf("replication(%d, %d, %d) = %d, %d, %v; want %d, %d", tc.rf, tc.minISR, tc.brokers, rf, minISR, err, tc.wantRF, tc.wantMinISR)
			}
		})
	}
}

func TestTopicConfigCarriesReplication(t *testing.T) {
	for _, spec := range []TopicSpec{
		{Name: "log"},
		{Name: "state", Compact: true},
		{Name: "queue", Retention: 24 * 60 * 60 * 1e9},
	} {
		c := spec.config(3, 2)
		if c.ReplicationFactor != 3 {
			t.Errorf("%s: replication factor %d, want 3", spec.Name, c.ReplicationFactor)
		}
		found := false
		for _, e := range c.ConfigEntries {
			if e.ConfigName == "min.insync.replicas" {
				found = e.ConfigValue == "2"
			}
		}
		if !found {
			t.Errorf("%s: entries %v lack min.insync.replicas=2", spec.Name, c.ConfigEntries)
		}
	}
}
