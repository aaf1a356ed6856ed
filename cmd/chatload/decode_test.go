package main

import "testing"

func TestSwitchboardFramesAreReadWithoutAFullDecode(t *testing.T) {
	sb := &switchboard{run: "l42"}
	var evs []event
	emit := func(e event) { evs = append(evs, e) }
	sb.decode([]byte(`{"type":"message","id":"m1","conv":"dm:a:b","seq":17,"from":"a","body":"load 5","ts":1,"cid":"l42.5","to":"b"}`), emit)
	sb.decode([]byte(`{"type":"sent","cid":"l42.6","id":"m2","conv":"dm:a:b","seq":18,"ts":1}`), emit)
	sb.decode([]byte(`{"type":"error","code":"rate_limited","message":"slow down","cid":"l42.7"}`), emit)
	sb.decode([]byte(`{"type":"message","id":"m3","conv":"public","seq":3,"from":"x","body":"a \"quoted\" body","cid":"other.1"}`), emit)
	sb.decode([]byte(`{"type":"synced","convs":{"dm:a:b":18}}`), emit)
	want := []event{
		{kind: evDeliver, idx: 5, conv: "dm:a:b", seq: 17, id: "m1"},
		{kind: evAck, idx: 6, conv: "dm:a:b", seq: 18, id: "m2"},
		{kind: evError, idx: 7, code: "rate_limited"},
		{kind: evDeliver, idx: -1, conv: "public", seq: 3, id: "m3"},
	}
	for i, w := range want {
		if evs[i].kind != w.kind || evs[i].idx != w.idx || evs[i].conv != w.conv || evs[i].seq != w.seq || evs[i].code != w.code || evs[i].id != w.id {
			t.Errorf("event %d: %+v, want %+v", i, evs[i], w)
		}
	}
	if evs[4].kind != evSynced || evs[4].synced["dm:a:b"] != 18 {
		t.Errorf("synced: %+v", evs[4])
	}
}

func TestAnEscapedValueIsUnescaped(t *testing.T) {
	if got := stringField([]byte(`{"type":"message","body":"say \"hi\"","cid":"x"}`), "body"); got != `say "hi"` {
		t.Errorf("body %q", got)
	}
}

func TestCentrifugoRepliesAndPushesBecomeEvents(t *testing.T) {
	cf := &centrifugo{run: "l42"}
	var evs []event
	cf.decode([]byte("{\"id\":6,\"publish\":{}}\n{\"push\":{\"channel\":\"u_bob\",\"pub\":{\"data\":{\"c\":\"l42.5\",\"f\":\"al\"},\"offset\":3}}}\n{\"id\":9,\"error\":{\"code\":103,\"message\":\"permission denied\"}}"),
		func(e event) { evs = append(evs, e) })
	if len(evs) != 3 || evs[0].kind != evAck || evs[0].idx != 5 || evs[1].kind != evDeliver || evs[1].idx != 5 ||
		evs[2].kind != evError || evs[2].idx != 8 || evs[2].code != "centrifugo_103" {
		t.Fatalf("events %+v", evs)
	}
	if string(cf.pong([]byte("{}"))) != "{}" || cf.pong([]byte(`{"id":1}`)) != nil {
		t.Error("ping not answered, or a reply taken for one")
	}
}
