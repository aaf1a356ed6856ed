package config

import (
	"strings"
	"testing"
)

func TestKafkaReplicationKeys(t *testing.T) {
	for _, tc := range []struct {
		name, rf, minISR string
		wantRF, wantISR  int
		wantErr          string
	}{
		{name: "the defaults are auto", wantRF: 0, wantISR: 0},
		{name: "auto is spelled out", rf: "auto", minISR: "auto"},
		{name: "counts are read", rf: "3", minISR: "2", wantRF: 3, wantISR: 2},
		{name: "a zero factor is refused", rf: "0", wantErr: "KAFKA_REPLICATION_FACTOR"},
		{name: "a word is refused", minISR: "two", wantErr: "KAFKA_MIN_INSYNC_REPLICAS"},
		{name: "min ISR above the factor is refused", rf: "1", minISR: "2", wantErr: "exceeds KAFKA_REPLICATION_FACTOR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rf != "" {
				t.Setenv("KAFKA_REPLICATION_FACTOR", tc.rf)
			}
			if tc.minISR != "" {
				t.Setenv("KAFKA_MIN_INSYNC_REPLICAS", tc.minISR)
			}
			cfg, err := LoadRouter("", false)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			k := cfg.Kafka("test")
			if k.ReplicationFactor != tc.wantRF || k.MinInsyncReplicas != tc.wantISR {
				t.Fatalf("kafka config rf %d min ISR %d, want %d and %d", k.ReplicationFactor, k.MinInsyncReplicas, tc.wantRF, tc.wantISR)
			}
		})
	}
}
